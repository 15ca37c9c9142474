import asyncio
from collections import deque

import pytest

from modelserve.batcher.collator import Pending, close_at, drop_dead_head, take_batch


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
