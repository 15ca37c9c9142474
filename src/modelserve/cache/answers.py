"""What the cache hands back (`Answer`) and whom it tells what happened (`CacheObserver`)."""

from __future__ import annotations

from typing import Any, Literal, Protocol

Outcome = Literal["hit", "miss", "shared", "bypass"]
"""How a cached model's request was answered: from the cache (`hit`), by the model (`miss`),
by another identical request's model call in flight (`shared`, single-flight), or by the model
because the caller asked not to read the cache (`bypass`)."""

RedisErrorKind = Literal["timeout", "error", "open", "oversize"]
"""Why a Redis operation was given up: too slow, failed, skipped while the circuit breaker is
open, or an answer over the per-entry cap (not stored)."""


class Answer:
    """One encoded answer: the response body of one input, as the codec wrote it.

    Stored as bytes, not as the model's output object, so that a hit skips both the model and
    the encoder. `result` is the model's output object when this request's own model call (or
    the one it shared) produced it, for what needs the object (shadow copies); None for a hit.
    """

    __slots__ = ("non_finite", "outcome", "payload", "result")

    def __init__(
        self, payload: bytes, non_finite: bool, outcome: Outcome, result: Any = None
    ) -> None:
        self.payload = payload
        # The output held NaN or an infinity (sent as null): the answer's header says so.
        self.non_finite = non_finite
        self.outcome = outcome
        self.result = result

    def as_outcome(self, outcome: Outcome) -> Answer:
        """The same answer, reached another way (payload shared, not copied)."""
        return Answer(self.payload, self.non_finite, outcome, self.result)

    @property
    def size(self) -> int:
        """Bytes this answer holds (its payload)."""
        return len(self.payload)


class Answers(list[Any]):
    """A batch request's answers, item by item: an `Answer` each, or the exception that
    rejected that item (`ItemRejectedError`), never stored."""

    __slots__ = ()


class CacheObserver(Protocol):
    """Whom the cache tells about lookups, evictions, its size and Redis failures (metrics).

    Called on the event loop, on the hot path for `on_lookup`: keep it to additions."""

    def on_lookup(self, model: str, outcome: Outcome) -> None:
        """A cached model's request was answered this way."""

    def on_evicted(self, model: str, reason: str, count: int) -> None:
        """Answers left the in-process cache: `size` (over a budget), `ttl` or `purge`."""

    def on_bytes(self, model: str, delta: int) -> None:
        """The in-process cache of the model grew (or shrank) by `delta` bytes."""

    def on_redis_error(self, kind: RedisErrorKind) -> None:
        """A Redis operation was given up (the request went on as a miss)."""


class NullObserver:
    """A `CacheObserver` that ignores everything (metrics off, tests)."""

    def on_lookup(self, model: str, outcome: Outcome) -> None:
        """Ignored."""

    def on_evicted(self, model: str, reason: str, count: int) -> None:
        """Ignored."""

    def on_bytes(self, model: str, delta: int) -> None:
        """Ignored."""

    def on_redis_error(self, kind: RedisErrorKind) -> None:
        """Ignored."""
