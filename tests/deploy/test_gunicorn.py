"""deploy/gunicorn.conf.py runs the same server as `modelserve serve --workers N`.

The first test reads both: the keyword arguments `serve` hands to `uvicorn.run` (captured, not
copied) against what the gunicorn worker hands to uvicorn, and the timeouts gunicorn itself
applies around them. The second runs gunicorn for real with two workers.
"""

from __future__ import annotations

import os
import runpy
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelserve.cli import serve as serve_cli
from modelserve.config import Settings
from modelserve.http.app import LIFESPAN_DRAIN_S

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "gunicorn.conf.py"
SERVICES = ROOT / "tests" / "cluster" / "services.py"
# What only the supervisor decides, and how each side spells it.
SUPERVISOR_KEYS = {"host", "port", "workers", "factory", "log_level"}


def load_conf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> dict[str, Any]:
    # The file sets PROMETHEUS_MULTIPROC_DIR when unset: give it one that monkeypatch restores.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    monkeypatch.setenv("MODELSERVE_TARGETS", str(SERVICES))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(CONF))


def serve_kwargs(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> dict[str, Any]:
    """What `modelserve serve --workers N` hands uvicorn's multi-process supervisor, captured."""
    captured: dict[str, Any] = {}

    def fake_run_workers(app: Any, options: dict[str, Any], *, workers: int) -> None:
        captured.update(options, app=app, workers=workers)

    monkeypatch.setattr(serve_cli, "_run_workers", fake_run_workers)
    serve_cli._run(serve_cli.FACTORY, settings, workers=settings.server.workers)
    return captured


def test_gunicorn_conf_agrees_with_serve(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {
        "MODELSERVE_SERVER__HOST": "127.0.0.2",
        "MODELSERVE_SERVER__PORT": "8123",
        "MODELSERVE_SERVER__WORKERS": "3",
        "MODELSERVE_SERVER__GRACEFUL_TIMEOUT_S": "12.5",
        "MODELSERVE_HTTP__KEEP_ALIVE_TIMEOUT_S": "7",
        "MODELSERVE_SERVER__LOG_LEVEL": "warning",
    }
    conf = load_conf(monkeypatch, tmp_path, **env)
    settings = Settings()
    served = serve_kwargs(monkeypatch, settings)
    worker = conf["worker_class"].CONFIG_KWARGS

    # The same app factory, called once per worker.
    assert served["factory"] is True
    assert conf["wsgi_app"] == f"{served['app']}()"
    # Where and how many, from the same settings.
    assert conf["bind"] == [f"{served['host']}:{served['port']}"] == ["127.0.0.2:8123"]
    assert conf["workers"] == served["workers"] == 3
    assert conf["loglevel"] == served["log_level"] == "warning"
    # Everything else serve gives uvicorn, the worker gives it too, with the same value: a
    # keyword added to serve and not here fails this test.
    per_process = {k: v for k, v in served.items() if k not in SUPERVISOR_KEYS | {"app"}}
    assert per_process == {k: worker[k] for k in per_process}
    assert worker["timeout_graceful_shutdown"] == 12.5
    assert worker["timeout_keep_alive"] == 7.0
    # gunicorn's SIGKILL comes only after the server's own drain: requests in flight for the
    # graceful timeout, then the lifespan's engine drain.
    assert conf["graceful_timeout"] >= 12.5 + LIFESPAN_DRAIN_S
    assert conf["keepalive"] == 7
    # Recycling is on, staggered.
    assert conf["max_requests"] > 0
    assert 0 < conf["max_requests_jitter"] < conf["max_requests"]
    assert conf["preload_app"] is False
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "metrics")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.e2e
def test_gunicorn_serves_with_two_workers_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    metrics = tmp_path / "metrics"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MODELSERVE_", "PROMETHEUS_MULTIPROC"))
    }
    env.update(
        {
            "MODELSERVE_TARGETS": str(SERVICES),
            "MODELSERVE_SERVER__HOST": "127.0.0.1",
            "MODELSERVE_SERVER__PORT": str(port),
            "MODELSERVE_SERVER__WORKERS": "2",
            "MODELSERVE_SERVER__GRACEFUL_TIMEOUT_S": "3",
            "MODELSERVE_DATA_DIR": str(tmp_path / "data"),
            "MODELSERVE_AUTH__ENABLED": "false",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        }
    )
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(CONF)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        ready = 0
        while ready < 4:
            assert proc.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            try:
                ok = httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                ok = False
            ready = ready + 1 if ok else 0
            time.sleep(0.05 if ok else 0.2)
        for _ in range(6):  # fresh connections: both workers answer
            answer = httpx.post(f"{base}/v1/models/echo/predict", json={"x": 2}, timeout=5)
            assert answer.status_code == 200
            assert answer.json() == {"y": 4.0}
        exposition = httpx.get(f"{base}/metrics", timeout=5).text
        pids = {
            line.split('pid="', 1)[1].split('"', 1)[0]
            for line in exposition.splitlines()
            if line.startswith("modelserve_process_resident_memory_bytes{")
        }
        # One shared multiprocess directory: a scrape sees both workers, as under `serve`.
        assert len(pids) == 2, exposition[:2000]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    text = log.read_text()
    assert "Application startup complete" in text
    assert "Shutting down" in text or "Application shutdown complete" in text
    # An operator's directory is kept (only a directory the run made is removed).
    assert metrics.exists()
