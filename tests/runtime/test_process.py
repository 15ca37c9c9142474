"""isolation="process": real worker processes, through the HTTP app and one replica at a time."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import psutil
import pytest
from fastapi.testclient import TestClient

from modelserve import ItemError, PredictionError, ServiceLoadError, load_target
from modelserve.errors import OutputMismatchError
from modelserve.runtime.process import ProcessReplica, WorkerState
from modelserve.runtime.process_codec import (
    BatchCodec,
    BatchRequest,
    BatchResult,
    InvalidOutput,
    decode,
)
from modelserve.service.spec import ServiceSpec
from tests.support.client import serving

SERVICES = str(Path(__file__).with_name("process_services.py"))
MARK_DIR_ENV = "MODELSERVE_TEST_MARK_DIR"
HANG_TEARDOWN_ENV = "MODELSERVE_TEST_HANG_TEARDOWN"
START_TIMEOUT_S = 60


def spec_of(attr: str) -> ServiceSpec:
    return load_target(f"{SERVICES}:{attr}")[0]


def specs(*attrs: str) -> list[ServiceSpec]:
    return [spec_of(attr) for attr in attrs]


class Recorder:
    """A `done` callback that remembers every call, so a test can check it came exactly once."""

    def __init__(self) -> None:
        self.calls: list[list[Any] | BaseException] = []
        self._first: concurrent.futures.Future[list[Any] | BaseException] = (
            concurrent.futures.Future()
        )

    def __call__(self, result: list[Any] | BaseException) -> None:
        self.calls.append(result)
        if not self._first.done():
            self._first.set_result(result)

    def result(self, timeout_s: float = START_TIMEOUT_S) -> list[Any] | BaseException:
        return self._first.result(timeout_s)


def run(replica: ProcessReplica, items: list[Any]) -> list[Any] | BaseException:
    recorder = Recorder()
    replica.run_batch(items, recorder)
    result = recorder.result()
    assert len(recorder.calls) == 1
    return result


def wait_for(replica: ProcessReplica, state: WorkerState) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while replica.state is not state:
        assert time.monotonic() < deadline, f"replica stayed {replica.state}, not {state}"
        time.sleep(0.01)


def assert_gone(pid: int | None) -> None:
    assert pid is not None
    assert pid not in {p.pid for p in multiprocessing.active_children()}
    assert pid not in {p.pid for p in psutil.Process().children(recursive=True)}
    assert not psutil.pid_exists(pid)


@pytest.fixture
def make_replica() -> Iterator[Any]:
    """Factory of started replicas, all stopped at the end of the test."""
    made: list[ProcessReplica] = []

    def make(attr: str = "Echo", spec: ServiceSpec | None = None, **options: Any) -> ProcessReplica:
        spec = spec or spec_of(attr)
        replica = ProcessReplica(spec, device="cpu", label=f"t-{attr}-{len(made)}", **options)
        made.append(replica)
        replica.start().result(START_TIMEOUT_S)
        return replica

    yield make
    for replica in made:
        replica.stop(timeout_s=5)


@pytest.fixture
def mark_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder the workers of this test write teardown marks to (they inherit the env)."""
    monkeypatch.setenv(MARK_DIR_ENV, str(tmp_path))
    return tmp_path


# -- the codec, no processes ----------------------------------------------------------------


def test_codec_round_trip_keeps_order_item_errors_and_rejections() -> None:
    spec = spec_of("Echo")
    codec = BatchCodec(spec.input_type, spec.output_type)
    text = spec.wire_input_type
    inputs = codec.encode_inputs(
        [text(text="a"), text(text="b", number=2**70), text(text="c", number=-1)]
    )
    assert inputs.size == 3
    assert inputs.sent == 2
    assert inputs.rejected[1].code == "invalid_input"
    request = decode(inputs.payload)
    assert isinstance(request, BatchRequest)
    items = codec.decode_inputs(request.items)
    assert [type(item) for item in items] == [spec.input_type, spec.input_type]
    assert [item.number for item in items] == [0, -1]
    shout = spec.output_type
    reply = decode(codec.encode_result([shout(text="A", pid=1), ItemError("nope", details={1, 2})]))
    assert isinstance(reply, BatchResult)
    outputs = codec.decode_outputs(reply, inputs)
    assert outputs is not None
    first, second, third = outputs
    assert first == shout(text="A", pid=1)
    assert second is inputs.rejected[1]
    assert isinstance(third, ItemError)
    assert (third.message, third.code, third.details) == ("nope", "item_rejected", [1, 2])


def test_codec_marks_bad_outputs_invalid_one_by_one() -> None:
    spec = spec_of("Echo")
    codec = BatchCodec(spec.input_type, spec.output_type)
    inputs = codec.encode_inputs([spec.wire_input_type(text=str(i)) for i in range(4)])
    good = {"text": "ok", "pid": 1}
    reply = decode(codec.encode_result([good, {"text": 1}, {"text": "x", "pid": 2**70}, "str"]))
    assert isinstance(reply, BatchResult)
    outputs = codec.decode_outputs(reply, inputs)
    assert outputs is not None
    assert outputs[0] == spec.output_type(**good)
    assert all(isinstance(o, InvalidOutput) for o in outputs[1:])
    short = decode(codec.encode_result([good]))
    assert isinstance(short, BatchResult)
    assert codec.decode_outputs(short, inputs) is None


@pytest.mark.parametrize("frame", [b"", b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"op": "x"})])
def test_decode_refuses_what_is_not_a_frame(frame: bytes) -> None:
    with pytest.raises(ValueError, match="not a worker frame"):
        decode(frame)


# -- through the HTTP app --------------------------------------------------------------------


def worker_processes() -> list[multiprocessing.process.BaseProcess]:
    return [p for p in multiprocessing.active_children() if p.name.startswith("modelserve-proc-")]


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with serving(specs("Echo", "AsyncEcho", "Sleeper")) as c:
        assert c.get("/readyz").status_code == 200
        assert len(worker_processes()) == 4
        yield c
    # App shutdown stopped every replica: no worker is left running.
    assert worker_processes() == []


def test_single_predict_runs_in_a_worker_process(client: TestClient) -> None:
    response = client.post("/v1/models/proc-echo/predict", json={"text": "hi", "number": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["text"] == "HI3"
    assert body["pid"] != os.getpid()
    assert client.get("/v1/models/proc-echo").json()["isolation"] == "process"


def test_batch_predict_answers_each_item_and_item_errors(client: TestClient) -> None:
    inputs = [{"text": "a"}, {"text": "reject"}, {"text": "b", "number": 2}]
    response = client.post("/v1/models/proc-echo/predict/batch", json={"inputs": inputs})
    assert response.status_code == 200
    body = response.json()
    assert [o and o["text"] for o in body["outputs"]] == ["A", None, "B2"]
    assert body["errors"] == [
        {"index": 1, "code": "rejected_here", "message": "no thanks", "details": {"n": 1}}
    ]


def test_item_error_on_single_endpoint_is_422(client: TestClient) -> None:
    response = client.post("/v1/models/proc-echo/predict", json={"text": "reject"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "rejected_here"


def test_async_predict_works_in_a_worker(client: TestClient) -> None:
    response = client.post("/v1/models/proc-async/predict", json={"text": "abc"})
    assert response.status_code == 200
    assert response.json()["text"] == "cba"


def test_predict_that_raises_is_500_without_traceback_and_logged(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="modelserve.runtime"):
        response = client.post("/v1/models/proc-echo/predict", json={"text": "raise"})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "prediction_failed"
    assert "proc-echo" in error["message"]
    assert "SECRET-MODEL-DETAIL" not in response.text
    assert "Traceback" not in response.text
    # The worker's traceback reached the server log instead.
    assert "SECRET-MODEL-DETAIL" in caplog.text
    assert "Traceback" in caplog.text
    again = client.post("/v1/models/proc-echo/predict", json={"text": "fine"})
    assert again.status_code == 200


def test_worker_that_exits_fails_its_request_then_restarts(client: TestClient) -> None:
    before = client.post("/v1/models/proc-echo/predict", json={"text": "x"}).json()["pid"]
    response = client.post("/v1/models/proc-echo/predict", json={"text": "exit"})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "prediction_failed"
    assert "worker process exited" in error["message"]
    after = client.post("/v1/models/proc-echo/predict", json={"text": "y"})
    assert after.status_code == 200
    assert after.json()["pid"] != before
    assert not psutil.pid_exists(before)


def test_wrong_output_count_names_the_service(client: TestClient) -> None:
    response = client.post("/v1/models/proc-echo/predict", json={"text": "miscount"})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "invalid_model_output"
    assert "proc-echo" in error["message"]


def test_invalid_output_is_500_invalid_model_output(client: TestClient) -> None:
    for text in ("bad-output", "huge-output"):
        response = client.post("/v1/models/proc-echo/predict", json={"text": text})
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "invalid_model_output"


def test_input_that_cannot_cross_the_pipe_is_422_not_500(client: TestClient) -> None:
    response = client.post("/v1/models/proc-echo/predict", json={"text": "x", "number": 2**70})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"
    inputs = [{"text": "a"}, {"text": "b", "number": 2**70}]
    batch = client.post("/v1/models/proc-echo/predict/batch", json={"inputs": inputs}).json()
    assert batch["outputs"][0]["text"] == "A"
    assert batch["outputs"][1] is None
    assert batch["errors"][0]["index"] == 1


def test_two_replicas_run_batches_in_parallel_processes(client: TestClient) -> None:
    inputs = [{"seconds": 1.0}, {"seconds": 1.0}]
    response = client.post("/v1/models/proc-sleeper/predict/batch", json={"inputs": inputs})
    assert response.status_code == 200
    first, second = response.json()["outputs"]
    assert first["pid"] != second["pid"]
    assert os.getpid() not in (first["pid"], second["pid"])
    # Each batch started before the other finished: they overlapped in time.
    assert first["started"] < second["finished"]
    assert second["started"] < first["finished"]


def test_setup_failure_marks_model_failed_while_others_serve() -> None:
    with serving(specs("Broken", "Echo")) as c:
        model = c.get("/v1/models/proc-broken").json()
        assert model["status"] == "failed"
        assert "weights file is missing" in model["reason"]
        assert c.get("/readyz").status_code == 503
        assert c.post("/v1/models/proc-broken/predict", json={"text": "a"}).status_code == 503
        ok = c.post("/v1/models/proc-echo/predict", json={"text": "a"})
        assert ok.status_code == 200


# -- one replica -----------------------------------------------------------------------------


def test_start_fails_with_the_setup_error() -> None:
    replica = ProcessReplica(spec_of("Broken"), device="cpu", label="t-broken")
    try:
        with pytest.raises(ServiceLoadError, match="weights file is missing"):
            replica.start().result(START_TIMEOUT_S)
    finally:
        replica.stop()
    assert replica.state is WorkerState.STOPPED


def test_outputs_are_validated_per_item_and_counted(make_replica: Any) -> None:
    replica = make_replica()
    text = spec_of("Echo").input_type
    result = run(replica, [text(text="a"), text(text="bad-output")])
    assert isinstance(result, list)
    good, bad = result
    assert good.text == "A"
    assert isinstance(bad, InvalidOutput)
    assert run(replica, []) == []
    mismatch = run(replica, [text(text="miscount")])
    assert isinstance(mismatch, OutputMismatchError)
    assert "proc-echo" in str(mismatch)
    rejected = run(replica, [text(text="reject")])
    assert isinstance(rejected, list)
    error = rejected[0]
    assert isinstance(error, ItemError)
    assert (error.code, error.message, error.details) == ("rejected_here", "no thanks", {"n": 1})


def test_worker_gets_the_artifact_dir(make_replica: Any, tmp_path: Path) -> None:
    spec = dataclasses.replace(spec_of("Echo"), artifact_dir=tmp_path)
    replica = make_replica(spec=spec)
    result = run(replica, [spec.input_type(text="artifacts")])
    assert isinstance(result, list)
    assert result[0].text == str(tmp_path)


def test_batches_queue_in_order_while_the_worker_restarts(make_replica: Any) -> None:
    replica = make_replica()
    text = spec_of("Echo").input_type
    first_pid = replica.pid
    crash, after, later = Recorder(), Recorder(), Recorder()
    replica.run_batch([text(text="exit")], crash)
    replica.run_batch([text(text="one")], after)
    replica.run_batch([text(text="two")], later)
    crashed = crash.result()
    assert isinstance(crashed, PredictionError)
    assert "worker process exited (exit code 1)" in str(crashed)
    one, two = after.result(), later.result()
    assert isinstance(one, list)
    assert isinstance(two, list)
    assert [one[0].text, two[0].text] == ["ONE", "TWO"]
    assert one[0].pid != first_pid
    assert replica.restarts == 1
    assert replica.state is WorkerState.READY
    assert [len(r.calls) for r in (crash, after, later)] == [1, 1, 1]
    assert_gone(first_pid)


def test_segfault_and_sigkill_mid_batch_fail_the_batch_and_restart(make_replica: Any) -> None:
    replica = make_replica()
    text = spec_of("Echo").input_type
    crashed = run(replica, [text(text="segfault")])
    assert isinstance(crashed, PredictionError)
    assert "worker process exited (killed by SIGSEGV)" in str(crashed)
    wait_for(replica, WorkerState.READY)
    recorder = Recorder()
    replica.run_batch([text(text="sleep")], recorder)  # sleeps 60 s: the kill comes first
    pid = replica.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # what the OOM killer does
    killed = recorder.result()
    assert isinstance(killed, PredictionError)
    assert "worker process exited (killed by SIGKILL)" in str(killed)
    fine = run(replica, [text(text="ok")])
    assert isinstance(fine, list)
    assert fine[0].text == "OK"
    assert replica.restarts == 2


def test_failed_restart_fails_fast_then_recovers(make_replica: Any, mark_dir: Path) -> None:
    replica = make_replica(restart_backoff_s=0.2)
    text = spec_of("Echo").input_type
    (mark_dir / "fail-setup").write_text("")
    assert isinstance(run(replica, [text(text="exit")]), PredictionError)
    wait_for(replica, WorkerState.DOWN)
    down = run(replica, [text(text="a")])
    assert isinstance(down, PredictionError)
    assert "could not be restarted" in str(down)
    (mark_dir / "fail-setup").unlink()
    wait_for(replica, WorkerState.READY)
    recovered = run(replica, [text(text="b")])
    assert isinstance(recovered, list)
    assert recovered[0].text == "B"


def test_stop_finishes_the_batch_tears_down_and_leaves_nothing(
    make_replica: Any, mark_dir: Path
) -> None:
    replica = make_replica("Sleeper")
    pid = replica.pid
    recorder = Recorder()
    replica.run_batch([spec_of("Sleeper").input_type(seconds=0.5)], recorder)
    replica.stop(timeout_s=30)
    result = recorder.result()
    assert isinstance(result, list)
    assert result[0].pid == pid
    assert (mark_dir / f"teardown-{pid}").read_text() == "done"
    assert_gone(pid)
    assert replica.state is WorkerState.STOPPED
    assert not [t for t in threading.enumerate() if t.name.startswith("modelserve-t-Sleeper")]
    late = run(replica, [spec_of("Sleeper").input_type(seconds=0)])
    assert isinstance(late, PredictionError)


def test_stop_kills_a_worker_whose_teardown_hangs(
    make_replica: Any, mark_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HANG_TEARDOWN_ENV, "1")
    replica = make_replica()
    pid = replica.pid
    replica.stop(timeout_s=1.5)
    assert_gone(pid)
    assert (mark_dir / f"teardown-{pid}").exists()  # teardown began, then the worker was killed


def test_exit_is_seen_even_when_a_grandchild_holds_the_pipe(
    make_replica: Any, mark_dir: Path
) -> None:
    replica = make_replica()
    recorder = Recorder()
    replica.run_batch([spec_of("Echo").input_type(text="fork-exit")], recorder)
    try:
        # The grandchild sleeps 60 s with the pipe open: only the exit watcher can end this.
        crashed = recorder.result(timeout_s=30)
        assert isinstance(crashed, PredictionError)
        assert "worker process exited" in str(crashed)
    finally:
        grandchild = int((mark_dir / "grandchild").read_text())
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(grandchild).kill()
    wait_for(replica, WorkerState.READY)
