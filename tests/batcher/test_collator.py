import asyncio
from collections import deque

import pytest

from modelserve.batcher.collator import Pending, WaitGate, close_at, drop_dead_head, take_batch


def _pending(loop: asyncio.AbstractEventLoop, item: int) -> Pending:
    return Pending(item, loop.create_future(), arrived=0.0, deadline=10.0)


def test_close_at_full_batch_closes_now() -> None:
    assert close_at(queued=4, max_batch=4, first_arrival=1.0, max_wait_s=0.5) is None


def test_close_at_no_wait_closes_now() -> None:
    assert close_at(queued=1, max_batch=4, first_arrival=1.0, max_wait_s=0.0) is None


def test_close_at_measured_from_first_arrival() -> None:
    assert close_at(queued=2, max_batch=4, first_arrival=1.0, max_wait_s=0.5) == pytest.approx(1.5)


def test_take_batch_skips_answered_items_and_respects_size() -> None:
    loop = asyncio.new_event_loop()
    try:
        items = [_pending(loop, i) for i in range(6)]
        items[1].future.cancel()
        items[3].future.set_result("late")
        queue = deque(items)
        batch = take_batch(queue, max_batch=3, now=5.0)
        assert [p.item for p in batch] == [0, 2, 4]
        assert all(p.taken_at == 5.0 for p in batch)
        assert [p.item for p in queue] == [5]
    finally:
        loop.close()


def test_drop_dead_head_stops_at_first_live_item() -> None:
    loop = asyncio.new_event_loop()
    try:
        items = [_pending(loop, i) for i in range(4)]
        items[0].future.cancel()
        items[1].future.cancel()
        items[3].future.cancel()
        queue = deque(items)
        drop_dead_head(queue)
        assert [p.item for p in queue] == [2, 3]
    finally:
        loop.close()


def test_wait_gate_waits_until_windows_stay_empty() -> None:
    gate = WaitGate(futile_limit=2, probe_every=4)
    assert gate.should_wait()
    gate.record(1, waited=True)
    assert gate.should_wait()  # one empty window is not a trickle yet
    gate.record(1, waited=True)
    assert [gate.should_wait() for _ in range(8)] == [False, False, False, True] * 2


def test_wait_gate_company_turns_waiting_back_on() -> None:
    gate = WaitGate(futile_limit=2, probe_every=16)
    gate.record(1, waited=True)
    gate.record(1, waited=True)
    assert not gate.should_wait()
    gate.record(3, waited=False)  # items queued behind a busy replica: load is back
    assert all(gate.should_wait() for _ in range(40))


def test_wait_gate_ignores_lone_batches_that_did_not_wait() -> None:
    gate = WaitGate(futile_limit=2)
    for _ in range(5):
        gate.record(1, waited=False)  # e.g. a window that had run out behind a busy replica
    assert all(gate.should_wait() for _ in range(40))
