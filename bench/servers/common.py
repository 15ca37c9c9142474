"""The uvicorn settings every uvicorn-based bench server shares with `modelserve serve`.

Mirrors `modelserve.cli.serve._run` (httptools, uvloop, no access log, no server header), so
the raw-ASGI ceiling, plain FastAPI and modelserve differ only in the app.
"""

from __future__ import annotations

import argparse
from typing import Any

UVICORN_SETTINGS: dict[str, Any] = {
    "http": "httptools",
    "loop": "uvloop",
    "lifespan": "on",
    "server_header": False,
    "access_log": False,
    "log_level": "warning",
    # Above wrk's largest concurrency, so c=1024 connections are not refused at accept time.
    "backlog": 4096,
}


def port_args(description: str) -> argparse.Namespace:
    """`--port`, `--host` and `--workload` for a bench server's `main`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workload", default="w1", choices=["w1", "w2"])
    return parser.parse_args()


def run_uvicorn(app: Any, host: str, port: int, *, http: Any = None) -> None:
    """Serve `app` with the shared settings until SIGTERM/SIGINT (`http` replaces the
    protocol setting)."""
    import uvicorn

    settings = dict(UVICORN_SETTINGS)
    if http is not None:
        settings["http"] = http
    uvicorn.run(app, host=host, port=port, **settings)
