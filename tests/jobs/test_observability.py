"""Job metrics (rows, failures by code, chunk latency, queue depth) and a span per chunk in the
trace whose id is the job's id."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from modelserve.jobs.states import ChunkState, JobState, final_job_state
from modelserve.schemas.jobs import JobStateName
from tests.jobs.conftest import Factory, jsonl
from tests.observability.conftest import spans

__all__ = ["spans"]

pytestmark = pytest.mark.services


def test_rows_failures_and_chunk_latency_are_counted(jobs_app: Factory) -> None:
    with jobs_app() as api:
        rows = [{"x": i} for i in range(24)] + [{"x": -1}, {"x": "bad"}]
        api.run(jsonl(rows))
        registry = api.app.state.observability.metrics.registry
        value = registry.get_sample_value
        assert (
            value("modelserve_job_rows_total", {"model": "doubler", "outcome": "succeeded"}) == 24
        )
        assert value("modelserve_job_rows_total", {"model": "doubler", "outcome": "failed"}) == 2
        assert (
            value("modelserve_job_row_failures_total", {"model": "doubler", "code": "negative"})
            == 1
        )
        failures = {"model": "doubler", "code": "invalid_input"}
        assert value("modelserve_job_row_failures_total", failures) == 1
        assert value("modelserve_job_chunk_duration_seconds_count", {"model": "doubler"}) == 3
        api.app.state.observability.metrics.jobs.set_queue_depth(7)
        exposed = api.client.get("/metrics").text
        assert "modelserve_job_queue_depth 7.0" in exposed
        assert "modelserve_job_chunk_duration_seconds_bucket" in exposed


def test_each_chunk_is_a_span_in_the_jobs_trace(
    jobs_app: Factory, spans: InMemorySpanExporter
) -> None:
    with jobs_app() as api:
        job = api.run(jsonl([{"x": i} for i in range(25)]))
    chunk_spans = [s for s in spans.get_finished_spans() if s.name == "job chunk doubler"]
    assert len(chunk_spans) == 3
    for span in chunk_spans:
        assert span.context is not None
        assert f"{span.context.trace_id:032x}" == job["id"]
        assert span.attributes is not None
        assert span.attributes["modelserve.job_id"] == job["id"]
        assert span.attributes["modelserve.job.outcome"] == "done"
    assert sorted(s.attributes["modelserve.job.chunk"] for s in chunk_spans) == [0, 1, 2]  # type: ignore[index]


def test_states_and_their_transitions() -> None:
    assert {s.value for s in JobState} == set(JobStateName.__args__)  # type: ignore[attr-defined]
    assert JobState.QUEUED.can_become(JobState.RUNNING)
    assert JobState.RUNNING.can_become(JobState.CANCELLED)
    assert JobState.FAILED.can_become(JobState.QUEUED)  # a retry
    assert not JobState.CANCELLED.can_become(JobState.QUEUED)
    assert not JobState.SUCCEEDED.can_become(JobState.CANCELLED)
    assert not ChunkState.DONE.can_become(ChunkState.PENDING)
    assert ChunkState.RUNNING.can_become(ChunkState.PENDING)  # lease lost, or retry later
    assert final_job_state(chunks_total=3, chunks_failed=3) is JobState.FAILED
    assert final_job_state(chunks_total=3, chunks_failed=2) is JobState.SUCCEEDED
