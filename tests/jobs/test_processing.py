"""Chunk processing on the in-memory queue: the batch share, yielding to requests, retries,
lost leases, give-up, release on stop, and the runner seam's payloads."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from modelserve.config import JobsConfig
from modelserve.errors import InvalidInputError, ItemRejectedError, OverloadedError
from modelserve.jobs.gateway import ModelHandle
from modelserve.jobs.memory_queue import MemoryJobQueue
from modelserve.jobs.processing import ChunkProcessor
from modelserve.jobs.runner import EmbeddedRunner
from modelserve.jobs.states import ChunkState
from modelserve.jobs.work import ChunkTask, ChunkWork, InputPart
from modelserve.registry.artifacts import MemoryArtifactStore

MODEL = ("m", "1")


class Sink:
    """A batching engine stand-in: answers each item soon after, counting what is in flight."""

    def __init__(self, answer: Callable[[Any], Any] | None = None) -> None:
        self.answer = answer or (lambda item: {"y": item["x"] * 2})
        self.depth = 0
        self.queue_depth_is_in_flight = False
        self.enqueued = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.hold = False
        self.started = asyncio.Event()

    @property
    def queue_depth(self) -> int:
        return self.in_flight if self.queue_depth_is_in_flight else self.depth

    @queue_depth.setter
    def queue_depth(self, value: int) -> None:
        self.depth = value

    def enqueue(self, item: Any, trace: object | None = None) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.enqueued += 1
        self.started.set()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if not self.hold:
            loop.call_later(0.001, self._settle, future, item)
        return future

    def _settle(self, future: asyncio.Future[Any], item: Any) -> None:
        self.in_flight -= 1
        try:
            future.set_result(self.answer(item))
        except Exception as exc:
            future.set_exception(exc)


class Gateway:
    """A ModelGateway over one fake model."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def resolve_version(self, model: str, version: str | None) -> str:
        return "1"

    def servable(self) -> set[tuple[str, str]]:
        return {MODEL}

    def handle(self, model: str, version: str) -> ModelHandle:
        def parse(body: bytes) -> Any:
            value = orjson.loads(body)
            if not isinstance(value.get("x"), int):
                raise InvalidInputError("x must be an integer", details=[{"loc": ["x"]}])
            return value

        return ModelHandle(model, version, parse, orjson.dumps, self.sink, max_batch_size=8)

    def schemas(self, model: str, version: str) -> tuple[dict[str, Any], dict[str, Any]]:
        return {}, {}

    def error_code(self, exc: BaseException) -> str:
        return getattr(exc, "code", type(exc).__name__)


def setup(
    sink: Sink, *, chunks: int = 1, rows: int = 40, **config: Any
) -> tuple[MemoryJobQueue, ChunkProcessor, list[ChunkWork]]:
    store = MemoryArtifactStore()
    data = b"".join(b'{"x": %d}\n' % i for i in range(rows * chunks))
    writer = store.writer(max_bytes=len(data))
    writer.write(data)
    blob = writer.commit()
    works = []
    offset = 0
    for index in range(chunks):
        start = offset
        for row in range(index * rows, (index + 1) * rows):
            offset += len(b'{"x": %d}\n' % row)
        works.append(
            ChunkWork(
                task=ChunkTask("j" * 32, index),
                model="m",
                version="1",
                input_format="jsonl",
                row_start=index * rows,
                row_end=(index + 1) * rows,
                byte_start=start,
                byte_end=offset,
                parts=(InputPart(0, blob.size, blob.sha256),),
            )
        )
    queue = MemoryJobQueue()
    processor = ChunkProcessor(
        queue=queue, store=store, gateway=Gateway(sink), config=JobsConfig(**config)
    )
    return queue, processor, works


def outputs(processor: ChunkProcessor, queue: MemoryJobQueue, task: ChunkTask) -> list[Any]:
    result = queue.results[task]
    assert result.result_sha256 is not None
    with processor.store.open(result.result_sha256) as handle:
        return [orjson.loads(line) for line in handle.read().splitlines()]


async def test_rows_in_flight_never_exceed_the_models_share() -> None:
    sink = Sink()
    queue, processor, works = setup(sink, chunks=3, batch_share=0.5, concurrency=3)
    await queue.enqueue(works)
    runner = EmbeddedRunner(
        queue=queue, processor=processor, gateway=processor.gateway, config=processor.config
    )
    assert await runner.burst() == 3
    # 3 chunks at once, one shared allowance of 0.5 x max_batch_size = 4 rows in the engine.
    assert sink.max_in_flight == 4
    assert sink.enqueued == 120
    for work in works:
        got = outputs(processor, queue, work.task)
        assert [r["row"] for r in got] == list(range(work.row_start, work.row_end))
        assert all(r["output"] == {"y": 2 * r["row"]} for r in got)


async def test_jobs_hold_back_while_requests_fill_a_batch() -> None:
    sink = Sink()
    queue, processor, [work] = setup(sink)
    await queue.enqueue([work])
    [lease] = await queue.lease(servable={MODEL}, limit=1)
    sink.queue_depth = 8  # a whole batch of requests is waiting
    task = asyncio.create_task(processor.process(lease))
    for _ in range(5):
        await asyncio.sleep(0)
    assert sink.enqueued == 0
    sink.queue_depth = 0
    assert await task == "done"
    assert sink.enqueued == 40
    share = processor.share(processor.gateway.handle(*MODEL))
    assert share.held_back == 1
    assert share.in_flight == 0


async def test_its_own_queued_rows_do_not_hold_a_job_back() -> None:
    sink = Sink()
    queue, processor, [work] = setup(sink, batch_share=0.5)
    await queue.enqueue([work])
    sink.queue_depth_is_in_flight = True  # everything queued is the job's own
    assert await processor.run(work.task)
    assert processor.share(processor.gateway.handle(*MODEL)).held_back == 0
    assert sink.max_in_flight == 4


async def test_bad_and_refused_rows_fail_alone() -> None:
    def answer(item: Any) -> Any:
        if item["x"] == 5:
            raise ItemRejectedError("no fives", code="five", details={"why": object()})
        return {"y": item["x"] * 2}

    sink = Sink(answer)
    queue, processor, [work] = setup(sink, rows=10)
    await queue.enqueue([work])
    store = processor.store
    assert isinstance(store, MemoryArtifactStore)
    assert await processor.run(work.task)
    failures = queue.results[work.task].failures
    assert [(f.row, f.code) for f in failures] == [(5, "five")]
    assert "object" in failures[0].details["text"]  # JSON-safe, whatever the model gave
    assert queue.results[work.task].rows_done == 9


async def test_shed_rows_are_tried_again() -> None:
    refused: dict[int, int] = {}

    def answer(item: Any) -> Any:
        if item["x"] % 7 == 0 and refused.get(item["x"], 0) < 2:
            refused[item["x"]] = refused.get(item["x"], 0) + 1
            raise OverloadedError("queue full")
        return {"y": item["x"] * 2}

    queue, processor, [work] = setup(Sink(answer))
    await queue.enqueue([work])
    assert await processor.run(work.task)
    assert queue.results[work.task].rows_done == 40
    assert set(refused.values()) == {2}


async def test_persistent_overload_is_retried_then_the_chunk_fails() -> None:
    def answer(item: Any) -> Any:
        raise OverloadedError("queue full")

    queue, processor, [work] = setup(Sink(answer), max_attempts=2, retry_base_s=0)
    await queue.enqueue([work])
    [first] = await queue.lease(servable={MODEL}, limit=1)
    assert await processor.process(first) == "retry"
    assert queue.state(work.task) is ChunkState.PENDING
    [second] = await queue.lease(servable={MODEL}, limit=1)
    assert second.attempt == 2
    assert await processor.process(second) == "failed"
    code, error = queue.failed[work.task]
    assert code == "chunk_failed"
    assert "kept refusing" in error


async def test_a_chunk_past_its_attempts_fails_without_running() -> None:
    sink = Sink()
    queue, processor, [work] = setup(sink, max_attempts=1)
    await queue.enqueue([work])
    [lease] = await queue.lease(servable={MODEL}, limit=1)
    late = dataclasses.replace(lease, attempt=2)  # e.g. its worker crashed once already
    assert await processor.process(late) == "failed"
    assert sink.enqueued == 0


async def test_a_lost_lease_records_nothing() -> None:
    sink = Sink()
    queue, processor, [work] = setup(sink)
    await queue.enqueue([work])
    [lease] = await queue.lease(servable={MODEL}, limit=1)
    queue.cancel(work.task.job_id)
    assert await processor.process(lease) == "lost"
    assert queue.results == {}
    assert queue.state(work.task) is ChunkState.CANCELLED


async def test_stopping_gives_running_chunks_back_uncounted() -> None:
    sink = Sink()
    sink.hold = True  # the model never answers
    queue, processor, [work] = setup(sink)
    await queue.enqueue([work])
    runner = EmbeddedRunner(
        queue=queue, processor=processor, gateway=processor.gateway, config=processor.config
    )
    runner.start()
    await sink.started.wait()
    assert queue.state(work.task) is ChunkState.RUNNING
    await runner.stop(timeout_s=0)
    assert runner.active == 0
    assert queue.state(work.task) is ChunkState.PENDING
    [again] = await queue.lease(servable={MODEL}, limit=1)
    assert again.attempt == 1


async def test_a_chunk_task_crosses_as_json_and_runs_once() -> None:
    queue, processor, [work] = setup(Sink(), rows=3)
    await queue.enqueue([work])
    wire = json.dumps(dataclasses.asdict(work.task))  # what a broker would carry
    task = ChunkTask(**json.loads(wire))
    assert task == work.task
    assert await processor.run(task) is True
    assert await processor.run(task) is False  # done: nothing to lease
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.index = 2  # type: ignore[misc]
