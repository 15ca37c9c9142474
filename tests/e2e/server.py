"""Start and stop real `modelserve serve` processes for the end-to-end tests.

`launch(...)` starts one server on a free port with its output captured to a file, waits until
its models have loaded, and always kills the server and its children afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import psutil

HERE = Path(__file__).resolve().parent
SERVICES = HERE / "services.py"
BROKEN_SERVICES = HERE / "broken_services.py"
HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 60.0
STDERR_TAIL_CHARS = 8000

# "ready": /readyz is 200 (every model loaded). "settled": no model is still loading, for
# servers that hold a model that is meant to fail.
WaitFor = Literal["ready", "settled"]


@dataclass
class ServerProcess:
    """One running `modelserve serve` and what a test needs to talk to it."""

    proc: subprocess.Popen[bytes]
    port: int
    stderr_path: Path
    graceful_timeout_s: float
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.port

    def client(self, **kwargs: Any) -> httpx.Client:
        """A sync client bound to this server, closed when the server stops."""
        kwargs.setdefault("timeout", 10.0)
        client = httpx.Client(base_url=self.base_url, **kwargs)
        self.clients.append(client)
        return client

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An async client bound to this server; use it as `async with`."""
        kwargs.setdefault("timeout", 20.0)
        kwargs.setdefault(
            "limits", httpx.Limits(max_connections=200, max_keepalive_connections=200)
        )
        return httpx.AsyncClient(base_url=self.base_url, **kwargs)

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def rss_bytes(self) -> int:
        """Resident memory of the server and its children."""
        parent = psutil.Process(self.proc.pid)
        return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])


def free_port() -> int:
    """A port nothing listens on right now (the kernel picks it for a socket bound to 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def server_command(
    target: Path, port: int, graceful_timeout_s: float, args: Sequence[str] = ()
) -> list[str]:
    """The command line under test (`args` go after the built-in options)."""
    return [
        sys.executable,
        "-m",
        "modelserve",
        "serve",
        str(target),
        "--host",
        HOST,
        "--port",
        str(port),
        "--graceful-timeout",
        str(graceful_timeout_s),
        *args,
    ]


def _wait_started(server: ServerProcess, wait_for: WaitFor) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last = "no answer yet"
    with httpx.Client(base_url=server.base_url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {server.proc.returncode} while starting:\n"
                    + server.stderr_text()[-STDERR_TAIL_CHARS:]
                )
            try:
                if wait_for == "ready":
                    response = client.get("/readyz")
                    if response.status_code == 200:
                        return
                else:
                    response = client.get("/v1/models")
                    if response.status_code == 200 and all(
                        m["status"] != "loading" for m in response.json()["data"]
                    ):
                        return
                last = f"{response.status_code} {response.text[:300]}"
            except httpx.TransportError as exc:
                last = repr(exc)
            time.sleep(0.1)
    raise RuntimeError(
        f"server not {wait_for} within {STARTUP_TIMEOUT_S:g}s (last: {last}):\n"
        + server.stderr_text()[-STDERR_TAIL_CHARS:]
    )


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server and every process it started; reap the server."""
    # Once reaped, the server's pid (and so its group id) may belong to someone else.
    reaped = proc.returncode is not None
    children: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess):
        children = psutil.Process(proc.pid).children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    if proc.poll() is None:
        proc.kill()
    if not reaped:
        # The server leads its own process group: this also reaches anything a child started.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    psutil.wait_procs(children, timeout=5)


@contextlib.contextmanager
def launch(
    tmp_dir: Path,
    *,
    target: Path = SERVICES,
    env: Mapping[str, str] | None = None,
    graceful_timeout_s: float = 10.0,
    wait_for: WaitFor = "ready",
    args: Sequence[str] = (),
) -> Iterator[ServerProcess]:
    """Run `modelserve serve TARGET` on a free port until the block ends."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    stderr_path = tmp_dir / f"server-{port}.stderr"
    # Settings come only from `env`: a MODELSERVE_* variable of the caller's shell must not leak in.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
    full_env = {
        **inherited,
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
        # These scenarios are about serving; auth has its own suite (tests/auth).
        "MODELSERVE_AUTH__ENABLED": "false",
        **(env or {}),
    }
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            server_command(target, port, graceful_timeout_s, args),
            cwd=tmp_dir,  # the server may create its data dir in its working directory
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=subprocess.STDOUT,
            # Own process group: the terminal's Ctrl+C does not reach it, and tests signal it alone.
            start_new_session=True,
        )
    server = ServerProcess(proc, port, stderr_path, graceful_timeout_s)
    try:
        _wait_started(server, wait_for)
        yield server
    finally:
        for client in server.clients:
            client.close()
        kill_tree(proc)


def send_signal(server: ServerProcess, signum: signal.Signals) -> None:
    """Signal the server process only (not the test runner)."""
    os.kill(server.proc.pid, signum)
