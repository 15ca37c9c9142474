"""The circuit breaker: open after failures in a row, one trial after the reset time."""

from __future__ import annotations

from modelserve.cache.breaker import CircuitBreaker
from tests.cache.recorder import Clock


def test_opens_after_failures_in_a_row_and_tries_once_after_the_reset() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, reset_s=5, clock=clock)
    breaker.failure()
    breaker.failure()
    breaker.success()  # not in a row
    breaker.failure()
    breaker.failure()
    assert breaker.allow() and not breaker.is_open
    breaker.failure()
    assert breaker.is_open and not breaker.allow()
    clock.now += 5
    assert breaker.allow()  # the trial
    assert not breaker.allow()  # only one at a time
    breaker.failure()  # the trial failed: open again, for another reset_s
    assert not breaker.allow()
    clock.now += 5
    assert breaker.allow()
    breaker.success()
    assert not breaker.is_open and breaker.allow() and breaker.allow()
