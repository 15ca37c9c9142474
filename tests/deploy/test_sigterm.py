"""After SIGTERM a server must refuse new connections at once, while it drains the old ones:
a load balancer then retries them elsewhere, POSTs included (nginx passes a request on after a
refused connection, never after sending it). docs/deploy.md, "Rolling restarts".

Gunicorn with deploy/gunicorn.conf.py does, and so does `modelserve serve --workers N`: its
supervisor closes the listening socket on SIGTERM instead of keeping it until the workers are
gone (cli/serve.py, `DrainingSupervisor`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "tests" / "e2e" / "services.py"
CONF = ROOT / "deploy" / "gunicorn.conf.py"
GRACEFUL_S = 4.0
# A new connection after SIGTERM must be refused within this; a server that accepts it instead
# holds it for the whole graceful timeout.
REFUSED_WITHIN_S = 1.0

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MODELSERVE_", "_MODELSERVE_", "PROMETHEUS_MULTIPROC"))
    }
    env.update(MODELSERVE_AUTH__ENABLED="false", MODELSERVE_DATA_DIR=str(tmp_path / "data"))
    return env


def new_connection_after_sigterm(command: list[str], env: dict[str, str], port: int) -> str:
    """Start the server, hold one request in flight, SIGTERM, then open a new connection:
    'refused' when it is refused within REFUSED_WITHIN_S, else what happened instead."""
    proc = subprocess.Popen(
        command,
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "the server exited while starting"
            assert time.monotonic() < deadline, "the server did not get ready"
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        # The sleeper holds a lone request until its batch fills (10 s): in flight at SIGTERM.
        held = threading.Thread(
            target=lambda: httpx.post(
                f"{base}/v1/models/sleeper/predict", json={"seconds": 1}, timeout=30
            ),
            daemon=True,
        )
        held.start()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        # uvicorn's supervisor looks at its signals every 0.5 s: let the shutdown begin.
        time.sleep(1.0)
        started = time.monotonic()
        try:
            httpx.get(f"{base}/livez", timeout=GRACEFUL_S + 5)
            outcome = "answered"
        except httpx.ConnectError:
            outcome = "refused"
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        took = time.monotonic() - started
        if outcome == "refused" and took > REFUSED_WITHIN_S:
            outcome = f"refused only after {took:.1f} s"
        elif outcome != "refused":
            outcome = f"{outcome} after {took:.1f} s"
        assert proc.wait(GRACEFUL_S + 15) == 0
        held.join(5)
        return outcome
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_gunicorn_refuses_new_connections_after_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = base_env(tmp_path)
    env.update(
        MODELSERVE_TARGETS=str(SERVICES),
        MODELSERVE_SERVER__PORT=str(port),
        MODELSERVE_SERVER__WORKERS="2",
        MODELSERVE_SERVER__GRACEFUL_TIMEOUT_S=str(GRACEFUL_S),
    )
    command = [sys.executable, "-m", "gunicorn", "-c", str(CONF)]
    assert new_connection_after_sigterm(command, env, port) == "refused"


def test_serve_with_workers_refuses_new_connections_after_sigterm(tmp_path: Path) -> None:
    port = free_port()
    command = [
        sys.executable, "-m", "modelserve", "serve", str(SERVICES), "--host", "127.0.0.1",
        "--port", str(port), "--workers", "2", "--graceful-timeout", str(GRACEFUL_S),
    ]  # fmt: skip
    assert new_connection_after_sigterm(command, base_env(tmp_path), port) == "refused"
