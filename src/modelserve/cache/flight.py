"""`SingleFlight`: identical concurrent misses share one model call.

The first miss of a key leads: its model call's answer goes to a shared future. A request for
the same key while that call is in flight follows: it waits on the shared future instead of
calling the model again. Every request gets a future of its own, chained to the shared one, so
that a client that goes away (its task cancelled, and with it what it awaits) cancels only its
own wait, never the answer its followers wait for.
"""

from __future__ import annotations

import asyncio

from modelserve.cache.answers import Answer, Outcome


class SingleFlight:
    """The shared futures of the keys whose answer is being computed (or looked up)."""

    def __init__(self) -> None:
        self._flights: dict[bytes, asyncio.Future[Answer]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def find(self, key: bytes) -> asyncio.Future[Answer] | None:
        """The shared future of a flight in progress for `key`, or None."""
        return self._flights.get(key)

    def start(self, key: bytes) -> asyncio.Future[Answer]:
        """Lead a new flight for `key` (replacing none: call after `find` found nothing)."""
        shared: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._flights[key] = shared
        return shared

    def end(self, key: bytes, shared: asyncio.Future[Answer]) -> None:
        """The flight is over (before its future is resolved, so that a request arriving from
        a done-callback finds the stored answer rather than a finished flight)."""
        if self._flights.get(key) is shared:
            del self._flights[key]


def follow(shared: asyncio.Future[Answer], outcome: Outcome | None) -> asyncio.Future[Answer]:
    """A future of the caller's own that gets the shared answer (as `outcome`, when given).

    Done at once when `shared` is: the task-free fast path answers in the same call.
    """
    mine: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
    if shared.done():
        _copy(shared, mine, outcome)
    else:
        shared.add_done_callback(lambda done: _copy(done, mine, outcome))
    return mine


def _copy(
    source: asyncio.Future[Answer], target: asyncio.Future[Answer], outcome: Outcome | None
) -> None:
    if target.done():  # the caller stopped waiting
        return
    if source.cancelled():
        target.cancel()
        return
    exc = source.exception()
    if exc is not None:
        target.set_exception(exc)
        return
    answer = source.result()
    target.set_result(answer if outcome is None else answer.as_outcome(outcome))
