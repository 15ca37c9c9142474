"""Shapes shared across modelserve, named once.

Foundation module: standard library only, so every layer may import it.
"""

from __future__ import annotations

import concurrent.futures
import enum
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any, Literal, Protocol, TypeAlias

# ASGI, spelled out here so the foundation carries no framework import.
Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

JSONValue: TypeAlias = (
    bool | int | float | str | Sequence["JSONValue"] | Mapping[str, "JSONValue"] | None
)

Isolation: TypeAlias = Literal["thread", "process"]


class ServiceStatus(enum.StrEnum):
    """Lifecycle of one served model.

    Allowed transitions: LOADING -> READY | FAILED; READY -> STOPPED; FAILED -> STOPPED.
    """

    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"


class Clock(Protocol):
    """Monotonic time source in seconds; tests pass a fake one."""

    def __call__(self) -> float: ...


# A batch result as it comes back from a replica: one entry per input, in order.
# Each entry is either an output object or a per-item error.
BatchDone: TypeAlias = Callable[[list[Any] | BaseException], None]


class BatchExecutor(Protocol):
    """Runs `predict` for one batch off the event loop and reports back once.

    `done` is called exactly once, from any thread, with the outputs or the exception.
    """

    @property
    def busy(self) -> bool: ...

    def run_batch(self, items: list[Any], done: BatchDone) -> None: ...


class Replica(BatchExecutor, Protocol):
    """A BatchExecutor that owns one loaded copy of a model (thread or process)."""

    def start(self) -> concurrent.futures.Future[None]:
        """Begin loading; the future completes when `setup` finished (or failed)."""
        ...

    def stop(self, timeout_s: float = 5.0) -> None:
        """Finish the current batch, tear down and release the model."""
        ...
