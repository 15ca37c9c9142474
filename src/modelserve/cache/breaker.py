"""`CircuitBreaker`: stop asking a backend that keeps failing, and try it again later."""

from __future__ import annotations

from collections.abc import Callable


class CircuitBreaker:
    """Closed while calls succeed; open (every call refused at once) after `failures` failures
    in a row; after `reset_s` open, half-open: one trial call is let through, and its outcome
    closes or reopens the breaker.

    With a cache, an open breaker turns every lookup into an immediate miss: a Redis that is
    down or slow costs at most `failures` timeouts per `reset_s`, never a stall per request.
    """

    def __init__(self, *, failures: int, reset_s: float, clock: Callable[[], float]) -> None:
        self.failures = failures
        self.reset_s = reset_s
        self._clock = clock
        self._count = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def is_open(self) -> bool:
        """True while calls are refused (not counting the half-open trial)."""
        return self._opened_at is not None

    def allow(self) -> bool:
        """May a call go ahead now? Lets one trial through once `reset_s` has passed."""
        opened = self._opened_at
        if opened is None:
            return True
        if self._trial or self._clock() - opened < self.reset_s:
            return False
        self._trial = True
        return True

    def success(self) -> None:
        """A call succeeded: closed again."""
        self._count = 0
        self._opened_at = None
        self._trial = False

    def failure(self) -> None:
        """A call failed (or timed out): open after `failures` in a row, or after a failed
        trial."""
        self._count += 1
        if self._trial or self._count >= self.failures:
            self._opened_at = self._clock()
            self._trial = False
