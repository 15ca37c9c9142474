"""How a service wants its requests grouped: the `batching(...)` value object."""

from __future__ import annotations

from dataclasses import dataclass

from modelserve.errors import ServiceDefinitionError

DEFAULT_MAX_QUEUE = 1024
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class BatchingConfig:
    """Batching policy of one service.

    A batch closes when it holds `max_batch_size` items or `max_wait_ms` after its first item
    arrived, whichever comes first. At most `max_queue` items wait; more are shed with 503.
    Each request gets `timeout_s` from arrival to answer, else 504.
    """

    max_batch_size: int = 1
    max_wait_ms: float = 0.0
    max_queue: int = DEFAULT_MAX_QUEUE
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ServiceDefinitionError("batching: max_batch_size must be >= 1")
        if self.max_wait_ms < 0:
            raise ServiceDefinitionError("batching: max_wait_ms must be >= 0")
        if self.max_queue < 1:
            raise ServiceDefinitionError("batching: max_queue must be >= 1")
        if self.timeout_s <= 0:
            raise ServiceDefinitionError("batching: timeout_s must be > 0")

    @property
    def enabled(self) -> bool:
        """True when more than one request can share a model call."""
        return self.max_batch_size > 1


def batching(
    max_batch_size: int = 1,
    max_wait_ms: float = 0.0,
    *,
    max_queue: int = DEFAULT_MAX_QUEUE,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> BatchingConfig:
    """Declare a service's batching policy (see `BatchingConfig`)."""
    return BatchingConfig(
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
        timeout_s=timeout_s,
    )
