"""App factory for the multi-worker test: what `modelserve serve --workers N` runs per worker.

Started by `uvicorn --factory --workers 2 tests.observability.worker_app:build`, with
PROMETHEUS_MULTIPROC_DIR already prepared by the test (as the CLI's supervisor does).
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from modelserve import Settings
from modelserve.observability import configure_process
from tests.observability.services import Scorer
from tests.observability.support import observed_app


def build() -> FastAPI:
    """One worker's app; each worker keeps its own SQLite file (no migration race)."""
    data_dir = Path(os.environ["OBS_TEST_DATA_DIR"]) / str(os.getpid())
    settings = Settings(
        mode="prod",
        data_dir=data_dir,
        auth={"enabled": False},
        server={"log_level": "warning"},
    )
    configure_process(settings)
    app, _ = observed_app(settings, [Scorer])
    return app
