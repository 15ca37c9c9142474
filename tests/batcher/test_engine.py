"""BatchEngine on virtual time: batching rules, backpressure, deadlines and failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from modelserve.batcher.engine import BatchEngine
from modelserve.batcher.observer import CountingObserver
from modelserve.errors import (
    DeadlineExceededError,
    ItemRejectedError,
    OutputMismatchError,
    OverloadedError,
    PredictionError,
    ServiceUnavailableError,
)
from modelserve.service.base import ItemError
from modelserve.service.batching import batching
from tests.support.fakes import FakeExecutor
from tests.support.vloop import run_virtual

Scenario = Callable[[BatchEngine, CountingObserver], Awaitable[Any]]


def run(
    scenario: Scenario,
    *executors: FakeExecutor,
    check_output: Callable[[Any], Any] | None = None,
    **config: Any,
) -> Any:
    async def main() -> Any:
        observer = CountingObserver()
        engine = BatchEngine(
            name="m",
            config=batching(**config),
            executors=list(executors) or [FakeExecutor()],
            observer=observer,
            check_output=check_output,
        )
        engine.start()
        try:
            return await scenario(engine, observer)
        finally:
            await engine.close()

    return run_virtual(main())


def test_batch_closes_when_full_without_waiting() -> None:
    ex = FakeExecutor(cost_s=0.01)

    async def scenario(engine: BatchEngine, _: CountingObserver) -> Any:
        t0 = asyncio.get_running_loop().time()
        results = await asyncio.gather(*(engine.submit(i) for i in range(8)))
        return t0, results

    t0, results = run(scenario, ex, max_batch_size=4, max_wait_ms=50)
    assert results == [i * 2 for i in range(8)]
    assert ex.batches == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert ex.started_at[0] == pytest.approx(t0)  # full batch: no max_wait
    assert ex.started_at[1] == pytest.approx(t0 + 0.01)  # next one as soon as the replica frees


def test_batch_closes_at_max_wait_from_first_arrival() -> None:
    ex = FakeExecutor(cost_s=0.001)

    async def scenario(engine: BatchEngine, _: CountingObserver) -> Any:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        first = asyncio.ensure_future(engine.submit(1))
        await asyncio.sleep(0.003)
        second = asyncio.ensure_future(engine.submit(2))
        return t0, await asyncio.gather(first, second)

    t0, results = run(scenario, ex, max_batch_size=4, max_wait_ms=10)
    assert results == [2, 4]
    assert ex.batches == [[1, 2]]
    assert ex.started_at[0] == pytest.approx(t0 + 0.010)


def test_a_trickle_stops_paying_the_wait_and_load_turns_it_back_on() -> None:
    ex = FakeExecutor(cost_s=0.001)

    async def scenario(engine: BatchEngine, _: CountingObserver) -> Any:
        loop = asyncio.get_running_loop()
        waits = []
        for i in range(5):  # one client: each request after the last answer
            t = loop.time()
            await engine.submit(i)
            waits.append(round(loop.time() - t - 0.001, 6))
        burst = [asyncio.ensure_future(engine.submit(i)) for i in (10, 11)]
        await asyncio.gather(*burst)  # two at once: not alone, so they wait for more
        t = loop.time()
        burst = [asyncio.ensure_future(engine.submit(i)) for i in (20, 21, 22)]
        await asyncio.gather(*burst)
        return waits, loop.time() - t

    waits, last = run(scenario, ex, max_batch_size=8, max_wait_ms=10)
    # The first two lone items wait their whole window for nothing; then items go out at once.
    assert waits == [0.010, 0.010, 0.0, 0.0, 0.0]
    assert ex.batches[:5] == [[0], [1], [2], [3], [4]]
    # Company (a batch of two) turns waiting back on: the next three wait and go out together.
    assert ex.batches[5:] == [[10, 11], [20, 21, 22]]
    assert last == pytest.approx(0.010 + 0.001)


def test_items_that_waited_for_a_busy_replica_go_out_at_once() -> None:
    ex = FakeExecutor(cost_s=0.05)

    async def scenario(engine: BatchEngine, _: CountingObserver) -> Any:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        first = asyncio.ensure_future(engine.submit(0))  # alone after 10 ms, then runs 50 ms
        await asyncio.sleep(0.015)
        rest = [asyncio.ensure_future(engine.submit(i)) for i in (1, 2)]
        await asyncio.gather(first, *rest)
        return t0

    t0 = run(scenario, ex, max_batch_size=8, max_wait_ms=10)
    assert ex.batches == [[0], [1, 2]]
    assert ex.started_at[0] == pytest.approx(t0 + 0.010)
    # The second batch's wait (10 ms from its first arrival at 15 ms) ran out while the replica
    # was busy, so it starts the moment the replica frees at 60 ms.
    assert ex.started_at[1] == pytest.approx(t0 + 0.060)


def test_full_queue_sheds_immediately_with_retry_after() -> None:
    ex = FakeExecutor(cost_s=1.0)

    async def scenario(engine: BatchEngine, observer: CountingObserver) -> Any:
        loop = asyncio.get_running_loop()
        # One goes straight to the replica, three wait: the queue is full.
        accepted = [asyncio.ensure_future(engine.submit(i)) for i in range(4)]
        await asyncio.sleep(0)
        t0 = loop.time()
        with pytest.raises(OverloadedError) as info:
            await engine.submit(99)
        assert loop.time() == t0  # no waiting at all
        assert info.value.retry_after_s >= 1
        assert observer.shed == 1
        return await asyncio.gather(*accepted)

    results = run(scenario, ex, max_batch_size=1, max_queue=3, timeout_s=10)
    assert results == [0, 2, 4, 6]


def test_deadline_while_queued_is_504_and_counted() -> None:
    ex = FakeExecutor(cost_s=5.0)

    async def scenario(engine: BatchEngine, observer: CountingObserver) -> Any:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        running = asyncio.ensure_future(engine.submit(1))
        await asyncio.sleep(0)
        with pytest.raises(DeadlineExceededError, match="while queued"):
            await engine.submit(2)
        expired_at = loop.time() - t0
        with pytest.raises(DeadlineExceededError, match="while running"):
            await running
        assert observer.expired_in_queue == 1
        assert observer.abandoned_running == 1
        # The replica is still usable once the long batch finished.
        await asyncio.sleep(5)
        ex.cost_s = 0.1
        assert await engine.submit(3) == 6
        return expired_at

    expired_at = run(scenario, ex, max_batch_size=1, timeout_s=1.0)
    assert expired_at == pytest.approx(1.0)
    assert ex.batches == [[1], [3]]  # the expired item never reached the model


def test_wrong_output_count_fails_the_batch_naming_the_service() -> None:
    ex = FakeExecutor(behaviour=lambda batch: batch[:-1], cost_s=0.001)

    async def scenario(engine: BatchEngine, _: CountingObserver) -> Any:
        return await asyncio.gather(*(engine.submit(i) for i in range(2)), return_exceptions=True)

    results = run(scenario, ex, max_batch_size=2, max_wait_ms=1)
    assert all(isinstance(r, OutputMismatchError) for r in results)
    assert "'m'" in str(results[0]) and "1 outputs for 2 inputs" in str(results[0])


def test_model_exception_becomes_generic_prediction_error() -> None:
    def boom(batch: list[Any]) -> list[Any]:
        raise RuntimeError("secret internal detail")

    async def scenario(engine: BatchEngine, observer: CountingObserver) -> Any:
        with pytest.raises(PredictionError) as info:
            await engine.submit(1)
        assert "secret" not in str(info.value)
        assert observer.errors == {"PredictionError": 1}

    run(scenario, FakeExecutor(behaviour=boom))


def test_item_error_fails_only_that_item() -> None:
    def picky(batch: list[Any]) -> list[Any]:
        return [ItemError("odd", code="odd_number") if x % 2 else x for x in batch]

    async def scenario(engine: BatchEngine, _: CountingObserver) -> Any:
        return await asyncio.gather(*(engine.submit(i) for i in range(4)), return_exceptions=True)

    results = run(scenario, FakeExecutor(behaviour=picky), max_batch_size=4)
    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], ItemRejectedError) and results[1].code == "odd_number"


def test_submit_many_returns_per_item_errors_and_batches_with_others() -> None:
    def picky(batch: list[Any]) -> list[Any]:
        return [ItemError("neg") if x < 0 else x for x in batch]

    ex = FakeExecutor(behaviour=picky)

    async def scenario(engine: BatchEngine, _: CountingObserver) -> Any:
        return await engine.submit_many([1, -1, 2])

    results = run(scenario, ex, max_batch_size=2)
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], ItemRejectedError)
    assert ex.batches == [[1, -1], [2]]


def test_submit_many_over_capacity_is_refused_whole() -> None:
    async def scenario(engine: BatchEngine, _: CountingObserver) -> Any:
        with pytest.raises(OverloadedError):
            await engine.submit_many(list(range(5)))

    run(scenario, max_queue=4)


def test_lone_item_skips_the_collator_when_nothing_to_wait_for() -> None:
    ex = FakeExecutor(cost_s=0.01)

    async def scenario(engine: BatchEngine, _: CountingObserver) -> Any:
        t0 = asyncio.get_running_loop().time()
        first = asyncio.ensure_future(engine.submit(1))
        await asyncio.sleep(0)
        # Dispatched during submit itself, before the collator task ran.
        assert ex.batches == [[1]]
        rest = await asyncio.gather(engine.submit(2), engine.submit(3))
        return t0, await first, rest

    t0, first, rest = run(scenario, ex, max_batch_size=8, max_wait_ms=0)
    assert (first, rest) == (2, [4, 6])
    assert ex.started_at[0] == pytest.approx(t0)
    assert ex.batches[1:] == [[2, 3]]  # arrivals during a busy replica still batch together


def test_output_check_converts_and_rejects_per_item() -> None:
    def check(value: Any) -> Any:
        if value == 4:
            raise ValueError("not allowed")
        return {"y": value}

    async def scenario(engine: BatchEngine, _: CountingObserver) -> Any:
        return await asyncio.gather(*(engine.submit(i) for i in (1, 2)), return_exceptions=True)

    results = run(scenario, check_output=check, max_batch_size=2)
    assert results[0] == {"y": 2}
    assert isinstance(results[1], OutputMismatchError)


def test_replicas_run_batches_in_parallel() -> None:
    a, b = FakeExecutor(cost_s=1.0), FakeExecutor(cost_s=1.0)

    async def scenario(engine: BatchEngine, _: CountingObserver) -> Any:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.gather(engine.submit(1), engine.submit(2))
        return loop.time() - t0

    elapsed = run(scenario, a, b, max_batch_size=1)
    assert a.batches == [[1]] and b.batches == [[2]]
    assert elapsed == pytest.approx(1.0)


def test_drain_finishes_in_flight_and_refuses_new_work() -> None:
    ex = FakeExecutor(cost_s=0.5)

    async def scenario(engine: BatchEngine, _: CountingObserver) -> Any:
        inflight = [asyncio.ensure_future(engine.submit(i)) for i in range(3)]
        await asyncio.sleep(0)
        drained = await engine.drain(timeout_s=10)
        with pytest.raises(ServiceUnavailableError):
            await engine.submit(5)
        return drained, await asyncio.gather(*inflight)

    drained, results = run(scenario, ex, max_batch_size=2)
    assert drained is True
    assert results == [0, 2, 4]


def test_drain_gives_up_after_timeout() -> None:
    async def scenario(engine: BatchEngine, _: CountingObserver) -> Any:
        inflight = asyncio.ensure_future(engine.submit(1))
        await asyncio.sleep(0)
        drained = await engine.drain(timeout_s=1)
        inflight.cancel()
        return drained

    assert run(scenario, FakeExecutor(cost_s=60), timeout_s=100) is False


def test_observer_failure_never_breaks_inference() -> None:
    class Broken(CountingObserver):
        def on_batch(self, size: int, queue_wait_s: float, run_s: float) -> None:
            raise RuntimeError("observer bug")

    async def main() -> Any:
        engine = BatchEngine(
            name="m", config=batching(), executors=[FakeExecutor()], observer=Broken()
        )
        engine.start()
        try:
            return await engine.submit(21)
        finally:
            await engine.close()

    assert run_virtual(main()) == 42


class InlineExecutor:
    """An executor offering `run_now`, like InlineReplica: runs batches on the loop."""

    busy = False

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[Any]] = []
        self.fail_on = fail_on

    def run_now(self, items: list[Any]) -> list[Any]:
        self.batches.append(list(items))
        if self.fail_on is not None and self.fail_on in items:
            raise RuntimeError("bad batch")
        return [i * 2 for i in items]

    def run_batch(self, items: list[Any], done: Any) -> None:  # pragma: no cover - not used
        raise AssertionError("an inline executor's batches run through run_now")


def test_inline_lone_request_is_answered_without_suspending() -> None:
    ex = InlineExecutor()

    async def scenario(engine: BatchEngine, _: CountingObserver) -> Any:
        coro = engine.submit(21)
        # One step of the coroutine: an inline answer is there before it awaits anything.
        try:
            coro.send(None)
        except StopIteration as stop:
            return stop.value
        raise AssertionError("submit suspended")

    assert run(scenario, ex, max_batch_size=8, max_wait_ms=0) == 42  # type: ignore[arg-type]
    assert ex.batches == [[21]]


def test_inline_requests_of_one_loop_pass_share_a_batch() -> None:
    ex = InlineExecutor()

    async def scenario(engine: BatchEngine, _: CountingObserver) -> Any:
        return await asyncio.gather(*(engine.submit(i) for i in range(10)))

    results = run(scenario, ex, max_batch_size=4, max_wait_ms=0)  # type: ignore[arg-type]
    assert results == [i * 2 for i in range(10)]
    # The first runs at once; the rest arrived in the same pass and run in full batches.
    assert ex.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]


def test_inline_failure_fails_only_the_failing_item() -> None:
    ex = InlineExecutor(fail_on=3)

    async def scenario(engine: BatchEngine, observer: CountingObserver) -> Any:
        results = await asyncio.gather(
            *(engine.submit(i) for i in range(6)), return_exceptions=True
        )
        return results, observer.errors

    results, errors = run(scenario, ex, max_batch_size=4, max_wait_ms=0)  # type: ignore[arg-type]
    # Batch [1, 2, 3, 4] raised; re-run in halves (tests/batcher/test_isolation.py), only 3 fails.
    assert isinstance(results[3], PredictionError)
    assert [r for i, r in enumerate(results) if i != 3] == [0, 2, 4, 8, 10]
    assert ex.batches[1:4] == [[1, 2, 3, 4], [1, 2], [3, 4]]
    assert errors == {"PredictionError": 1}
