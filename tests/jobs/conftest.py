"""Job apps on SQLite and PostgreSQL, and a client with shortcuts for uploads and jobs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from modelserve import Settings, create_app
from modelserve.config import JobsConfig
from modelserve.db import migrate
from modelserve.jobs.processing import ChunkProcessor
from modelserve.jobs.runner import EmbeddedRunner
from tests.jobs.services import Doubler

FINISHED = ("succeeded", "failed", "cancelled")
WAIT_S = 60.0


def reset_jobs(url: str) -> None:
    """Empty the job tables: the PostgreSQL database is shared by the whole session, and a job
    another test left queued would count against this test's limits (or be run here)."""
    migrate.upgrade(url)
    engine = create_engine(migrate.sync_url(url))
    try:
        with engine.begin() as connection:
            # Chunks, failed rows and parts go with their jobs and uploads (ON DELETE CASCADE).
            connection.execute(text("DELETE FROM job_schedules"))
            connection.execute(text("DELETE FROM jobs"))
            connection.execute(text("DELETE FROM job_uploads"))
    finally:
        engine.dispose()


@dataclass
class JobsClient:
    """A TestClient of an app with jobs, and the common calls."""

    client: TestClient
    app: FastAPI

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the app's event loop."""
        portal = self.client.portal
        assert portal is not None
        return portal.call(lambda: coro)

    @property
    def processor(self) -> ChunkProcessor:
        processor: ChunkProcessor = self.app.state.job_processor
        return processor

    def upload(
        self, data: bytes, *, part_bytes: int = 1 << 20, headers: dict[str, str] | None = None
    ) -> str:
        """Upload `data` in parts of `part_bytes`, complete it; its id."""
        created = self.client.post("/v1/uploads", headers=headers)
        assert created.status_code == 201, created.text
        upload_id: str = created.json()["id"]
        for offset in range(0, len(data), part_bytes):
            part = data[offset : offset + part_bytes]
            response = self.client.put(
                f"/v1/uploads/{upload_id}",
                params={"offset": offset},
                content=part,
                headers={"content-type": "application/octet-stream", **(headers or {})},
            )
            assert response.status_code == 200, response.text
        done = self.client.post(f"/v1/uploads/{upload_id}/complete", headers=headers)
        assert done.status_code == 200, done.text
        return upload_id

    def submit(self, upload_id: str, fmt: str = "jsonl", **fields: Any) -> Any:
        """POST /v1/jobs (the response, whatever its status)."""
        headers = fields.pop("headers", None)
        body = {"model": "doubler", "input": {"upload_id": upload_id}, "format": fmt, **fields}
        return self.client.post("/v1/jobs", json=body, headers=headers)

    def run(self, data: bytes, fmt: str = "jsonl", **fields: Any) -> dict[str, Any]:
        """Upload, submit (202 expected) and wait until the job finished; the job."""
        response = self.submit(self.upload(data), fmt, **fields)
        assert response.status_code == 202, response.text
        return self.wait(response.json()["id"])

    def job(self, job_id: str, **headers: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/jobs/{job_id}", headers=headers)
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        return job

    def wait(self, job_id: str, states: Sequence[str] = FINISHED) -> dict[str, Any]:
        """Poll until the job is in one of `states`; fail after WAIT_S."""
        deadline = time.monotonic() + WAIT_S
        while True:
            job = self.job(job_id)
            if job["state"] in states:
                return job
            if time.monotonic() > deadline:
                pytest.fail(f"job still {job['state']} after {WAIT_S:.0f} s: {job}")
            time.sleep(0.02)

    def burst(self) -> int:
        """Run every leasable chunk now, in this app's process (for apps without the
        embedded runner); how many chunks ran."""
        processor = self.processor
        runner = EmbeddedRunner(
            queue=processor.queue,
            processor=processor,
            gateway=processor.gateway,
            config=processor.config,
        )
        ran: int = self.call(runner.burst())
        return ran

    def results(self, job_id: str, fmt: str | None = None) -> bytes:
        params = {"format": fmt} if fmt else {}
        response = self.client.get(f"/v1/jobs/{job_id}/results", params=params)
        assert response.status_code == 200, response.text
        return response.content

    def errors(self, job_id: str) -> list[dict[str, Any]]:
        """Every failed row, through the pages."""
        found: list[dict[str, Any]] = []
        after = -1
        while True:
            response = self.client.get(
                f"/v1/jobs/{job_id}/errors", params={"after_row": after, "limit": 100}
            )
            assert response.status_code == 200, response.text
            page = response.json()
            found.extend(page["data"])
            if page["next_after_row"] is None:
                return found
            after = page["next_after_row"]


Factory = Callable[..., AbstractContextManager[JobsClient]]


def jobs_settings(database_url: str, data_dir: Path, **jobs: Any) -> Settings:
    """Test settings: quick polling, small chunks, short leases unless the test says."""
    values: dict[str, Any] = {"chunk_size": 10, "poll_interval_s": 0.05, "lease_s": 5.0}
    values.update(jobs)
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        jobs=JobsConfig(**values),
        server={"graceful_timeout_s": 5.0},  # type: ignore[arg-type]
    )


@pytest.fixture
def jobs_app(database_url: str, tmp_path: Path) -> Factory:
    """Factory: `with jobs_app(**jobs_settings) as api:` an app serving Doubler, with jobs."""
    reset_jobs(database_url)

    @contextmanager
    def make(
        *, services: Sequence[Any] = (Doubler,), settings: Settings | None = None, **jobs: Any
    ) -> Iterator[JobsClient]:
        chosen = settings or jobs_settings(database_url, tmp_path, **jobs)
        app = create_app(chosen, services)
        with TestClient(app, raise_server_exceptions=False) as client:
            wait_loaded(client)
            yield JobsClient(client, app)

    return make


def wait_loaded(client: TestClient) -> None:
    """Until no model is loading."""
    deadline = time.monotonic() + WAIT_S
    while any(d.status.value == "loading" for d in client.app.state.runtime):  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            pytest.fail("models still loading")
        time.sleep(0.01)


def jsonl(rows: Sequence[dict[str, Any]]) -> bytes:
    """Rows as JSON lines."""
    import orjson

    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


# RabbitMQ (a queue per test) for the Celery tests here and in tests/faults.
from tests.jobs.broker import broker  # noqa: E402, F401
