"""Streamed answers from a real `modelserve serve` (tests/protocols/stream_services.py).

The `ticks` service writes each chunk it makes, and when its generator closes, to a state file,
so these tests see from outside the server exactly how far generation went: that a client
that disconnects stops it within one chunk, that a reader who reads nothing pauses it (the
server does not buffer on its behalf), and what a stream does at SIGTERM.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.e2e.server import ServerProcess, launch, send_signal

pytestmark = pytest.mark.e2e

SERVICES = Path(__file__).resolve().parent / "stream_services.py"
TICKS = "/v1/models/ticks/predict"
HEARTBEAT_S = 0.3
WAIT_S = 20.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("stream")
    env = {
        "STREAM_TEST_STATE": str(tmp / "state"),
        "MODELSERVE_DATA_DIR": str(tmp / "data"),
        "MODELSERVE_HTTP__STREAM_HEARTBEAT_S": str(HEARTBEAT_S),
    }
    with launch(tmp, target=SERVICES, env=env) as process:
        yield process


def state(server: ServerProcess, tag: str) -> tuple[int, bool]:
    """(chunks made, generator closed) of the `ticks` request tagged `tag`."""
    path = Path(server.stderr_path.parent / "state")
    produced, closed = 0, False
    if path.exists():
        for line in path.read_text().splitlines():
            name, count, done = line.split()
            if name == tag:
                produced, closed = int(count), done == "1"
    return produced, closed


def wait_until(check: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"not within {WAIT_S}s: {what}")


def events(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) of each server-sent event; comments are ("comment", text)."""
    out: list[tuple[str | None, str]] = []
    for block in text.split("\n\n"):
        if not block:
            continue
        name = None
        data = ""
        for line in block.split("\n"):
            if line.startswith(":"):
                out.append(("comment", line[1:].strip()))
            elif line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
        if data:
            out.append((name, data))
    return out


def test_sse_sends_each_chunk_then_done(server: ServerProcess) -> None:
    client = server.client()
    response = client.post(f"{TICKS}?stream=true", json={"tag": "sse", "count": 3})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-model-version"] == "1"
    assert events(response.text) == [
        (None, '{"index":0,"pad":"x"}'),
        (None, '{"index":1,"pad":"x"}'),
        (None, '{"index":2,"pad":"x"}'),
        ("done", "{}"),
    ]
    assert state(server, "sse") == (3, True)
    # The same request without asking for a stream is an ordinary predict.
    plain = client.post(TICKS, json={"tag": "sse", "count": 3})
    assert plain.json() == {"index": 3, "pad": ""}


def test_accept_header_chooses_sse_or_json_lines(server: ServerProcess) -> None:
    client = server.client()
    sse = client.post(TICKS, json={"count": 1}, headers={"accept": "text/event-stream"})
    assert sse.headers["content-type"] == "text/event-stream"
    lines = client.post(
        "/v1/models/echo/predict",
        json={"text": "one two three"},
        headers={"accept": "application/x-ndjson"},
    )
    assert lines.status_code == 200
    assert lines.headers["content-type"] == "application/x-ndjson"
    assert [orjson.loads(line) for line in lines.text.splitlines()] == ["one", "two", "three"]


def test_a_chunk_that_is_not_json_ends_the_stream_with_an_error(server: ServerProcess) -> None:
    client = server.client()
    response = client.post("/v1/models/echo/predict?stream=true", json={"text": "a ! b"})
    got = events(response.text)
    assert got[0] == (None, '"a"')
    assert got[1][0] == "error"
    assert orjson.loads(got[1][1])["error"]["code"] == "invalid_model_output"
    assert len(got) == 2


def test_bad_input_is_refused_before_any_stream(server: ServerProcess) -> None:
    client = server.client()
    response = client.post(f"{TICKS}?stream=true", json={"count": -1})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"
    assert client.post(f"{TICKS}?stream=true", content=b"{").status_code == 400
    assert client.post("/v1/models/nope/predict?stream=true", json={}).status_code == 404
    # A model without predict_stream: a 400 that says so (the ASGI path and the protocol's).
    for ask in ({"params": {"stream": "true"}}, {"headers": {"accept": "text/event-stream"}}):
        refused = client.post("/v1/models/plain/predict", json={"text": "x"}, **ask)  # type: ignore[arg-type]
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "stream_not_supported"
    assert (
        client.post("/v1/models/plain/predict?stream=false", json={"text": "x"}).status_code == 200
    )


def test_a_failure_mid_stream_is_an_error_event_without_internals(server: ServerProcess) -> None:
    client = server.client()
    response = client.post(f"{TICKS}?stream=true", json={"count": 5, "fail_after": 2})
    assert response.status_code == 200
    got = events(response.text)
    assert [name for name, _ in got] == [None, None, "error"]
    error = orjson.loads(got[-1][1])["error"]
    assert error["code"] == "prediction_failed"
    assert "secret" not in response.text
    # Before the first chunk, the failure is an ordinary error answer with its status.
    early = client.post(f"{TICKS}?stream=true", json={"count": 5, "fail_after": 0})
    assert early.status_code == 500
    assert early.json()["error"]["code"] == "prediction_failed"
    assert "secret" not in early.text


def test_a_disconnect_stops_generation_within_one_chunk(server: ServerProcess) -> None:
    client = server.client()
    request = {"tag": "gone", "count": 100_000, "every_s": 0.05}
    with client.stream("POST", f"{TICKS}?stream=true", json=request) as response:
        seen = 0
        for line in response.iter_lines():
            if line.startswith("data: "):
                seen += 1
                if seen == 3:
                    break
    # The connection is closed now; the generator may finish the chunk it was making.
    at_close, _ = state(server, "gone")
    wait_until(lambda: state(server, "gone")[1], "the generator closed")
    produced, closed = state(server, "gone")
    assert closed
    assert produced <= at_close + 1, (at_close, produced)


def test_a_slow_reader_pauses_the_generator(server: ServerProcess) -> None:
    """A client that reads nothing: once the socket buffers are full the generator waits (its
    count stops), and it resumes when the client reads again."""
    size = 65536
    body = orjson.dumps({"tag": "slow", "count": 100_000, "size": size})
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(server.address)
    try:
        sock.sendall(
            b"POST " + TICKS.encode() + b"?stream=true HTTP/1.1\r\nhost: x\r\n"
            b"content-type: application/json\r\ncontent-length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        wait_until(lambda: state(server, "slow")[0] > 0, "the stream started")
        # Paused: the count holds still over several looks (it rises by one chunk per send
        # while the buffers fill, then stops for good while nobody reads).
        last, still = -1, 0
        deadline = time.monotonic() + WAIT_S
        while still < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
            produced, closed = state(server, "slow")
            assert not closed
            still = still + 1 if produced == last else 0
            last = produced
        assert still >= 10, "the generator never paused"
        # Bounded by what the socket buffers hold, not by the 6.5 GB the stream would make.
        assert last * size < 64 * 1024 * 1024, last
        # Reading again resumes it.
        sock.settimeout(5)
        for _ in range(200):
            sock.recv(1 << 20)
        wait_until(lambda: state(server, "slow")[0] > last, "the generator resumed")
    finally:
        sock.close()
    wait_until(lambda: state(server, "slow")[1], "the generator closed after the disconnect")


def test_idle_streams_get_heartbeats(server: ServerProcess) -> None:
    client = server.client()
    response = client.post(f"{TICKS}?stream=true", json={"count": 2, "every_s": 1.0})
    got = events(response.text)
    assert ("comment", "heartbeat") in got
    assert [d for name, d in got if name is None] == [
        '{"index":0,"pad":"x"}',
        '{"index":1,"pad":"x"}',
    ]
    assert got[-1] == ("done", "{}")


def test_streams_past_the_cap_get_503_with_retry_after(server: ServerProcess) -> None:
    """`ticks` allows 3 streams (max_streams=3, one replica); the fourth is refused at once."""
    request = {"count": 100_000, "every_s": 0.05}
    with contextlib.ExitStack() as stack:
        for index in range(3):
            response = stack.enter_context(
                server.client().stream(
                    "POST", f"{TICKS}?stream=true", json={**request, "tag": f"cap{index}"}
                )
            )
            assert response.status_code == 200
        refused = server.client().post(f"{TICKS}?stream=true", json={**request, "tag": "cap3"})
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "overloaded"
        assert int(refused.headers["retry-after"]) >= 1
        assert state(server, "cap3") == (0, False)  # never started
    for index in range(3):
        wait_until(lambda i=index: state(server, f"cap{i}")[1], "the capped streams closed")
    # Their slots are free again.
    again = server.client().post(f"{TICKS}?stream=true", json={"count": 1})
    assert again.status_code == 200


def metric(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def test_stream_metrics(server: ServerProcess) -> None:
    client = server.client()
    labels = '{model="ticks",version="1"}'
    chunks = f"modelserve_stream_chunks_total{labels}"
    first = f"modelserve_stream_first_chunk_seconds_count{labels}"
    before = client.get("/metrics").text
    client.post(f"{TICKS}?stream=true", json={"count": 4})
    after = client.get("/metrics").text
    assert metric(after, chunks) - metric(before, chunks) == 4
    assert metric(after, first) - metric(before, first) == 1
    assert metric(after, f"modelserve_streams_open{labels}") == 0
    # While one is open, the gauge says so.
    with client.stream("POST", f"{TICKS}?stream=true", json={"count": 1000, "every_s": 0.05}) as r:
        next(r.iter_lines())
        assert metric(client.get("/metrics").text, f"modelserve_streams_open{labels}") == 1


def test_sigterm_lets_short_streams_finish_and_ends_long_ones_with_an_error(
    tmp_path: Path,
) -> None:
    env = {"STREAM_TEST_STATE": str(tmp_path / "state"), "MODELSERVE_DATA_DIR": str(tmp_path)}
    with launch(tmp_path, target=SERVICES, env=env, graceful_timeout_s=3.0) as server:
        short = {"tag": "short", "count": 5, "every_s": 0.2}
        long = {"tag": "long", "count": 100_000, "every_s": 0.1}
        with (
            httpx.Client(base_url=server.base_url, timeout=30) as a,
            httpx.Client(base_url=server.base_url, timeout=30) as b,
            a.stream("POST", f"{TICKS}?stream=true", json=short) as first,
            b.stream("POST", f"{TICKS}?stream=true", json=long) as second,
        ):
            assert first.status_code == second.status_code == 200
            send_signal(server, signal.SIGTERM)
            finished = events(first.read().decode())
            ended = events(second.read().decode())
        assert finished[-1] == ("done", "{}")
        assert len([1 for name, _ in finished if name is None]) == 5
        assert ended[-1][0] == "error"
        assert orjson.loads(ended[-1][1])["error"]["code"] == "model_unavailable"
        assert server.proc.wait(timeout=15) == 0
