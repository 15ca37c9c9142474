"""`ServiceClient.stream`: a Service's `predict_stream` through the pipeline's streamed steps,
in-process, with what the HTTP route answers: chunks as a client decodes them, the error event
of a model failing mid-stream (no internals), ordinary errors before the first chunk, and a
reader that stops early closing the generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelserve.testing import ServiceClient
from tests.protocols.stream_services import Echo, Plain, Ticks


def test_chunks_arrive_decoded_with_the_stream_headers() -> None:
    with ServiceClient(Ticks) as client:
        reply = client.stream({"count": 3})
        assert reply.ok, reply
        assert [c["index"] for c in reply.chunks] == [0, 1, 2]
        assert reply.headers["content-type"] == "text/event-stream"
        assert reply.headers["x-model-version"] == "1"
        record = client.records[-1]
        assert (record.status, record.model, record.error_code) == (200, "ticks", None)


def test_a_model_failing_mid_stream_ends_with_the_error_event() -> None:
    with ServiceClient(Ticks) as client:
        reply = client.stream({"count": 5, "fail_after": 2})
        assert reply.status == 200 and not reply.ok
        assert len(reply.chunks) == 2
        assert reply.error_code == "prediction_failed"
        assert "secret-internal-detail" not in str(reply.error)


def test_errors_before_the_first_chunk_are_ordinary_answers() -> None:
    with ServiceClient(Ticks) as client:
        invalid = client.stream({"count": -1})
        assert (invalid.status, invalid.error_code, invalid.chunks) == (422, "invalid_input", [])
    with ServiceClient(Plain) as client:
        refused = client.stream({"text": "a b"})
        assert (refused.status, refused.error_code) == (400, "stream_not_supported")


def test_async_generators_and_chunks_that_are_not_json() -> None:
    with ServiceClient(Echo) as client:
        assert client.stream({"text": "to be or"}).chunks == ["to", "be", "or"]
        broken = client.stream({"text": "a ! b"})
        assert broken.chunks == ["a"]
        assert broken.error_code == "invalid_model_output"


def test_a_reader_that_stops_early_closes_the_generator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("STREAM_TEST_STATE", str(state))
    with ServiceClient(Ticks) as client:
        reply = client.stream({"tag": "early", "count": 1000}, max_chunks=2)
        assert len(reply.chunks) == 2
    lines = [line.split() for line in state.read_text().splitlines()]
    closed = [int(n) for tag, n, flag in lines if tag == "early" and flag == "1"]
    # Closed at its next yield: at most one chunk past what was read.
    assert closed and closed[0] <= 3
