"""R25: when predict raises for a batch, only the items that make it raise fail.

The engine re-runs the failed batch split in halves (bisection) on the same executor, bounded
by 2*ceil(log2(n)) extra calls plus single-item calls once that budget is spent; a service may
opt out (`isolate_failures=False`). On virtual time, with a fake and an inline executor.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Collection
from typing import Any

import pytest

from modelserve.batcher.engine import BatchEngine, bisection_budget
from modelserve.batcher.observer import CountingObserver
from modelserve.errors import OutputMismatchError, PredictionError
from modelserve.service.batching import batching
from tests.support.fakes import FakeExecutor
from tests.support.vloop import run_virtual


class Poisoned:
    """predict that raises for any batch holding one of `bad`, else doubles each item."""

    def __init__(self, bad: Collection[int]) -> None:
        self.bad = set(bad)
        self.calls: list[list[int]] = []

    def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(list(items))
        if self.bad.intersection(items):
            raise RuntimeError(f"poisoned input among {len(items)}")
        return [2 * i for i in items]


class InlineExecutor:
    """An executor offering `run_now`, like InlineReplica: runs batches on the loop."""

    busy = False

    def __init__(self, predict: Poisoned) -> None:
        self.predict = predict

    def run_now(self, items: list[Any]) -> list[Any]:
        return self.predict(items)

    def run_batch(self, items: list[Any], done: Any) -> None:  # pragma: no cover - not used
        raise AssertionError("an inline executor's batches run through run_now")


def submit_together(
    n: int, executor: Any, *, isolate: bool = True
) -> tuple[list[Any], CountingObserver]:
    """Submit n items that all land in one batch; their results (or errors) and the counters."""

    async def main() -> tuple[list[Any], CountingObserver]:
        observer = CountingObserver()
        engine = BatchEngine(
            name="m",
            config=batching(max_batch_size=n, max_wait_ms=50),
            executors=[executor],
            observer=observer,
            isolate_failures=isolate,
        )
        engine.start()
        try:
            results = await asyncio.gather(
                *(engine.submit(i) for i in range(n)), return_exceptions=True
            )
            return list(results), observer
        finally:
            await engine.close()

    outcome: tuple[list[Any], CountingObserver] = run_virtual(main())
    return outcome


@pytest.mark.parametrize("inline", [False, True], ids=["thread-like", "inline"])
def test_one_poisoned_item_among_16_fails_alone(inline: bool) -> None:
    predict = Poisoned(bad={11})
    executor = InlineExecutor(predict) if inline else FakeExecutor(behaviour=predict)
    results, observer = submit_together(16, executor)
    assert isinstance(results[11], PredictionError)
    assert "poisoned" not in str(results[11])  # still the generic message
    assert [r for i, r in enumerate(results) if i != 11] == [2 * i for i in range(16) if i != 11]
    # The whole batch ran once, then one poisoned item costs two calls per halving.
    assert predict.calls[0] == list(range(16))
    assert len(predict.calls) - 1 == observer.reruns == 2 * math.ceil(math.log2(16))
    assert [11] in predict.calls
    assert observer.errors == {"PredictionError": 1}


def test_opting_out_fails_the_whole_batch_without_rerunning() -> None:
    predict = Poisoned(bad={11})
    results, observer = submit_together(16, FakeExecutor(behaviour=predict), isolate=False)
    assert all(isinstance(r, PredictionError) for r in results)
    assert predict.calls == [list(range(16))]
    assert observer.reruns == 0


@pytest.mark.parametrize("n", [2, 3, 5, 16, 33])
def test_bisection_of_one_poisoned_item_stays_within_its_budget(n: int) -> None:
    for bad in {0, n // 2, n - 1}:
        predict = Poisoned(bad={bad})
        results, observer = submit_together(n, FakeExecutor(behaviour=predict))
        assert [i for i, r in enumerate(results) if isinstance(r, PredictionError)] == [bad]
        assert observer.reruns <= bisection_budget(n) == 2 * math.ceil(math.log2(n))


@pytest.mark.parametrize("bad", [{1, 9}, {0, 5, 10, 15}, set(range(16))])
def test_several_poisoned_items_fail_and_only_they(bad: set[int]) -> None:
    predict = Poisoned(bad=bad)
    results, observer = submit_together(16, FakeExecutor(behaviour=predict))
    failed = {i for i, r in enumerate(results) if isinstance(r, PredictionError)}
    assert failed == bad
    assert all(results[i] == 2 * i for i in range(16) if i not in bad)
    # Past the bisection budget, what still fails runs item by item: at most n more calls.
    assert observer.reruns <= bisection_budget(16) + 16


def test_a_single_item_batch_is_not_rerun() -> None:
    predict = Poisoned(bad={0})
    results, observer = submit_together(1, FakeExecutor(behaviour=predict))
    assert isinstance(results[0], PredictionError)
    assert predict.calls == [[0]] and observer.reruns == 0


def test_a_wrong_output_count_is_not_rerun() -> None:
    calls: list[list[int]] = []

    def short(items: list[int]) -> list[int]:
        calls.append(list(items))
        return items[:-1]

    results, observer = submit_together(4, FakeExecutor(behaviour=short))
    assert all(isinstance(r, OutputMismatchError) for r in results)
    assert len(calls) == 1 and observer.reruns == 0


def test_returning_none_is_an_output_error_not_a_crash() -> None:
    def nothing(items: list[Any]) -> Any:
        return None

    results, _ = submit_together(3, FakeExecutor(behaviour=nothing))
    assert all(isinstance(r, OutputMismatchError) for r in results)
    assert "NoneType" in str(results[0])
