"""A real `modelserve serve --registry` process for the CLI, docs and R4 tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from tests.e2e.server import HOST, free_port, kill_tree

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 60.0


@dataclass
class RegistryServer:
    """One running server and how to reach it."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def rss_bytes(self) -> int:
        """Resident memory of the server and its children."""
        parent = psutil.Process(self.proc.pid)
        return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])


@contextmanager
def registry_server(
    tmp_dir: Path,
    *,
    targets: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    args: Sequence[str] = (),
) -> Iterator[RegistryServer]:
    """`modelserve serve [TARGETS] --registry` with its data in `tmp_dir`, until the block ends."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = tmp_dir / f"server-{port}.log"
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
    full_env = {
        **inherited,
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
        "MODELSERVE_DATA_DIR": str(tmp_dir / "data"),
        # Module references like tests.registry.services resolve from the repository.
        "PYTHONPATH": str(REPO),
        # As the test session says (off for serving tests, see tests/conftest.py) unless the
        # caller asks for it.
        "MODELSERVE_AUTH__ENABLED": os.environ.get("MODELSERVE_AUTH__ENABLED", "true"),
        **(env or {}),
    }
    command = [
        sys.executable,
        "-m",
        "modelserve",
        "serve",
        *targets,
        "--registry",
        "--host",
        HOST,
        "--port",
        str(port),
        "--graceful-timeout",
        "5",
        *args,
    ]
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RegistryServer(proc, f"http://{HOST}:{port}", log)
    try:
        _wait_live(server)
        yield server
    finally:
        kill_tree(proc)


def _wait_live(server: RegistryServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with httpx.Client(base_url=server.url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(f"server exited while starting:\n{server.output()[-8000:]}")
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"server not ready in {STARTUP_TIMEOUT_S:g}s:\n{server.output()[-8000:]}")


def wait_serving(server: RegistryServer, name: str, version: str, timeout_s: float = 60.0) -> None:
    """Wait until unpinned requests to `name` are answered by `version`."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        while time.monotonic() < deadline:
            response = client.post(f"/v1/models/{name}/predict", json={"x": 1})
            if response.headers.get("x-model-version") == version:
                return
            time.sleep(0.1)
    raise RuntimeError(f"{name} not served by version {version}:\n{server.output()[-8000:]}")
