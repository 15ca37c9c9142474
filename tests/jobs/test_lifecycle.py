"""Cancelling mid-job, retrying failed chunks, a job whose every chunk fails."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from modelserve.config import JobsConfig
from modelserve.errors import ServiceUnavailableError
from modelserve.jobs.gateway import ModelGateway, ModelHandle
from modelserve.jobs.processing import ChunkProcessor
from tests.jobs.conftest import Factory, JobsClient, jsonl

pytestmark = pytest.mark.services


class Loading:
    """A ModelGateway whose models never finish loading (every chunk fails transiently)."""

    def __init__(self, inner: ModelGateway) -> None:
        self._inner = inner

    def resolve_version(self, model: str, version: str | None) -> str:
        return self._inner.resolve_version(model, version)

    def servable(self) -> set[tuple[str, str]]:
        return self._inner.servable()

    def handle(self, model: str, version: str) -> ModelHandle:
        raise ServiceUnavailableError(f"model {model!r} is still loading")

    def schemas(self, model: str, version: str) -> tuple[dict[str, Any], dict[str, Any]]:
        return self._inner.schemas(model, version)

    def error_code(self, exc: BaseException) -> str:
        return self._inner.error_code(exc)


def failing_processor(api: JobsClient) -> ChunkProcessor:
    """A processor in the same app that gives up on every chunk at its first try."""
    real = api.processor
    return ChunkProcessor(
        queue=real.queue,
        store=real.store,
        gateway=Loading(real.gateway),
        config=JobsConfig(max_attempts=1),
    )


def rows_of(api: JobsClient, job_id: str) -> list[int]:
    return [orjson.loads(line)["row"] for line in api.results(job_id).splitlines()]


def lease_one(api: JobsClient) -> Any:
    processor = api.processor
    leases = api.call(processor.queue.lease(servable=processor.gateway.servable(), limit=1))
    assert len(leases) == 1
    return leases[0]


def test_cancel_stops_within_one_chunk_and_keeps_finished_results(jobs_app: Factory) -> None:
    with jobs_app(embedded=False) as api:
        job = api.submit(api.upload(jsonl([{"x": i} for i in range(50)]))).json()
        assert api.call(api.processor.process(lease_one(api))) == "done"
        running = lease_one(api)
        assert api.job(job["id"])["state"] == "running"
        cancelled = api.client.post(f"/v1/jobs/{job['id']}/cancel")
        assert cancelled.status_code == 200
        assert cancelled.json()["state"] == "cancelled"
        # The chunk that was running finishes its work but is not recorded; nothing else runs.
        assert api.call(api.processor.process(running)) == "lost"
        assert api.burst() == 0
        final = api.job(job["id"])
        assert final["state"] == "cancelled"
        assert final["rows"] == {"total": 50, "done": 10, "failed": 0, "remaining": 40}
        assert final["finished_at"] is not None
        assert rows_of(api, job["id"]) == list(range(10))
        assert api.client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409
        assert api.client.post(f"/v1/jobs/{job['id']}/retry").status_code == 409


def test_a_queued_job_cancels_before_anything_runs(jobs_app: Factory) -> None:
    with jobs_app(embedded=False) as api:
        job = api.submit(api.upload(jsonl([{"x": 1}]))).json()
        assert api.client.post(f"/v1/jobs/{job['id']}/cancel").json()["state"] == "cancelled"
        assert api.burst() == 0
        assert api.results(job["id"]) == b""
        assert api.job(job["id"])["started_at"] is None


def test_retry_runs_only_the_failed_chunks(jobs_app: Factory) -> None:
    with jobs_app(embedded=False) as api:
        job = api.submit(api.upload(jsonl([{"x": i} for i in range(50)]))).json()
        failing = failing_processor(api)
        for _ in range(2):
            assert api.call(failing.process(lease_one(api))) == "failed"
        assert api.burst() == 3
        done = api.job(job["id"])
        assert done["state"] == "succeeded"
        assert done["chunks"] == {"total": 5, "failed": 2}
        assert done["rows"] == {"total": 50, "done": 30, "failed": 20, "remaining": 0}
        errors = api.errors(job["id"])
        assert [e["row"] for e in errors] == list(range(20))
        assert {e["code"] for e in errors} == {"chunk_failed"}
        assert "still loading" in errors[0]["message"]
        assert rows_of(api, job["id"]) == list(range(20, 50))

        retried = api.client.post(f"/v1/jobs/{job['id']}/retry")
        assert retried.status_code == 200, retried.text
        assert retried.json()["state"] == "queued"
        assert retried.json()["rows"]["failed"] == 0
        assert retried.json()["finished_at"] is None
        assert api.burst() == 2
        final = api.job(job["id"])
        assert final["state"] == "succeeded"
        assert final["chunks"] == {"total": 5, "failed": 0}
        assert final["rows"] == {"total": 50, "done": 50, "failed": 0, "remaining": 0}
        assert api.errors(job["id"]) == []
        assert rows_of(api, job["id"]) == list(range(50))


def test_a_job_whose_every_chunk_fails_is_failed_and_retryable(jobs_app: Factory) -> None:
    with jobs_app(embedded=False) as api:
        job = api.submit(api.upload(jsonl([{"x": i} for i in range(15)]))).json()
        failing = failing_processor(api)
        for _ in range(2):
            api.call(failing.process(lease_one(api)))
        failed = api.job(job["id"])
        assert failed["state"] == "failed"
        assert failed["rows"]["failed"] == 15
        assert api.client.post(f"/v1/jobs/{job['id']}/retry").status_code == 200
        assert api.burst() == 2
        assert api.job(job["id"])["state"] == "succeeded"


def test_transient_failures_back_off_before_the_next_try(jobs_app: Factory) -> None:
    with jobs_app(embedded=False, max_attempts=3, retry_base_s=3600) as api:
        job = api.submit(api.upload(jsonl([{"x": 1}]))).json()
        real = api.processor
        slow = ChunkProcessor(
            queue=real.queue, store=real.store, gateway=Loading(real.gateway), config=real.config
        )
        assert api.call(slow.process(lease_one(api))) == "retry"
        # Not due for an hour: nothing is leasable, the job waits (it is not failed).
        assert api.burst() == 0
        assert api.job(job["id"])["state"] == "running"
        assert api.job(job["id"])["rows"]["failed"] == 0


def test_submits_and_cancels_while_chunks_finish_are_never_refused(jobs_app: Factory) -> None:
    # Submits and cancels race the runner's leases and checkpoints (4 chunks at a time, one row
    # each) on one database: none is refused (a 503 for a busy database) or lost.
    with jobs_app(chunk_size=1, concurrency=4, max_active_jobs=100) as api:
        upload = api.upload(jsonl([{"x": i} for i in range(150)]))
        busy = api.submit(upload).json()
        statuses = []
        for _ in range(15):
            job = api.submit(upload)
            statuses.append(job.status_code)
            statuses.append(api.client.post(f"/v1/jobs/{job.json()['id']}/cancel").status_code)
        assert set(statuses) <= {202, 200, 409}, statuses
        assert statuses.count(202) == 15
        assert api.wait(busy["id"])["rows"]["done"] == 150
