"""`ModelShare`: slots, requests first, pacing only while other traffic is answered, and two
batches in flight while the job is alone."""

from __future__ import annotations

import asyncio

from modelserve.jobs.sharing import ModelShare


class Queue:
    """An engine's queue depth, as a job sees it."""

    def __init__(self) -> None:
        self.queue_depth = 0


async def run_rows(share: ModelShare, rows: int, *, others_per_row: int, seen: list[int]) -> None:
    """Take and give `rows` rows one at a time; the model answers `others_per_row` requests
    next to each."""
    queue = Queue()
    for _ in range(rows):
        await share.take(queue)
        seen[0] += 1 + others_per_row
        share.give()


async def test_a_job_alone_never_rests() -> None:
    seen = [0]
    share = ModelShare(4, share=0.5, items_seen=lambda: seen[0])
    await run_rows(share, 40, others_per_row=0, seen=seen)
    assert share.rested == 0
    assert share.answered == 40


async def test_a_job_rests_after_each_window_while_requests_are_answered() -> None:
    seen = [0]
    share = ModelShare(4, share=0.5, items_seen=lambda: seen[0])
    await run_rows(share, 40, others_per_row=1, seen=seen)
    assert share.rested == 9  # every window of 4 rows after the first
    assert share.in_flight == 0


async def test_a_full_share_or_no_counter_turns_pacing_off() -> None:
    seen = [0]
    full = ModelShare(4, share=1.0, items_seen=lambda: seen[0])
    await run_rows(full, 20, others_per_row=3, seen=seen)
    blind = ModelShare(4, share=0.5)
    await run_rows(blind, 20, others_per_row=3, seen=seen)
    assert (full.rested, blind.rested) == (0, 0)


async def test_slots_bound_rows_in_flight() -> None:
    share = ModelShare(2)
    queue = Queue()
    await share.take(queue)
    await share.take(queue)
    third = asyncio.create_task(share.take(queue))
    await asyncio.sleep(0)
    assert not third.done()
    share.give()
    await third
    assert share.in_flight == 2


async def test_requests_waiting_hold_a_row_back() -> None:
    share = ModelShare(4)
    queue = Queue()
    queue.queue_depth = 3  # three requests wait, none of them the job's
    row = asyncio.create_task(share.take(queue))
    for _ in range(3):
        await asyncio.sleep(0)
    assert not row.done()
    queue.queue_depth = 0
    await row
    assert share.held_back == 1


async def take_all(share: ModelShare, queue: Queue, rows: int) -> int:
    """Take up to `rows` slots without giving any back; how many were granted at once."""
    granted = 0
    for _ in range(rows):
        task = asyncio.create_task(share.take(queue))
        for _ in range(5):
            await asyncio.sleep(0)
        if not task.done():
            task.cancel()
            return granted
        granted += 1
    return granted


async def test_a_job_alone_keeps_two_batches_in_flight() -> None:
    seen = [0]
    share = ModelShare(4, share=0.5, items_seen=lambda: seen[0], burst=16)
    assert await take_all(share, Queue(), 20) == 16


async def test_once_requests_are_answered_the_job_is_back_to_its_share() -> None:
    seen = [0]
    # A full share: no rests in the way, the slots are what is tested.
    share = ModelShare(4, share=1.0, items_seen=lambda: seen[0], burst=16)
    await run_rows(share, 8, others_per_row=1, seen=seen)  # windows that saw requests
    assert await take_all(share, Queue(), 20) == 4


async def test_requests_waiting_keep_a_job_alone_to_its_share() -> None:
    seen = [0]
    share = ModelShare(4, share=0.5, items_seen=lambda: seen[0], burst=16)
    queue = Queue()
    granted = 0
    for _ in range(6):
        queue.queue_depth = share.in_flight + 1  # one request waits besides the job's rows
        task = asyncio.create_task(share.take(queue))
        for _ in range(5):
            await asyncio.sleep(0)
        if not task.done():
            task.cancel()
            break
        granted += 1
    assert granted <= 4


async def test_without_a_counter_there_is_no_burst() -> None:
    share = ModelShare(4, burst=16)
    assert await take_all(share, Queue(), 20) == 4
