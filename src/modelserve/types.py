"""Shapes shared across modelserve, named once.

Foundation module: standard library only, so every layer may import it.
"""

from __future__ import annotations

import concurrent.futures
import enum
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
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

Isolation: TypeAlias = Literal["thread", "process", "inline"]


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


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: resolved once per request by auth, read by everything after it.

    `kind` is "user" (JWT), "api_key" or "anonymous" (auth disabled). `subject` identifies the
    credential (user id or key id, never the secret); `owner_id` is the user who owns the
    objects the caller may see; `rate_key` is what rate limits count against.
    """

    kind: Literal["user", "api_key", "anonymous"]
    subject: str
    owner_id: str | None
    role: Literal["admin", "member", "anonymous"]
    scopes: frozenset[str]
    rate_key: str

    def has_scope(self, scope: str) -> bool:
        """True if a granted scope covers `scope` (`predict:*` covers `predict:iris`)."""
        if "admin" in self.scopes or scope in self.scopes:
            return True
        family, _, _ = scope.partition(":")
        return f"{family}:*" in self.scopes


ANONYMOUS = Principal(
    kind="anonymous",
    subject="anonymous",
    owner_id=None,
    role="anonymous",
    scopes=frozenset({"admin"}),
    rate_key="anonymous",
)
"""The principal of every request when auth is disabled: may do everything."""


class PredictGuard(Protocol):
    """Authenticates and rate-limits one predict request before its body is read.

    Raises the auth errors of `errors.py` (401/403/429); returns the Principal otherwise.
    Implemented by `modelserve.auth`; the fast path calls `check_predict_now` for every predict
    request and awaits `check_predict` only when that returns None.
    """

    def check_predict_now(self, headers: list[tuple[bytes, bytes]], model: str) -> Principal | None:
        """The same check when it needs no I/O (a cached credential), else None."""
        ...

    async def check_predict(self, headers: list[tuple[bytes, bytes]], model: str) -> Principal:
        """Who is calling, or raise why they may not predict with `model`."""
        ...

    async def authenticate(self, headers: list[tuple[bytes, bytes]]) -> Principal:
        """Who is calling, whatever they may do (AuthenticationError when absent or bad)."""
        ...


class RequestObserver(Protocol):
    """Sees every HTTP request once it is answered (metrics, access logs, prediction log).

    Called on the event loop after the response is sent; must be cheap and must not raise.
    """

    def on_request(self, record: RequestRecord) -> None:
        """Record one answered request."""
        ...


@dataclass(slots=True)
class RequestRecord:
    """One answered request, as observers see it (treat as read-only).

    Not a frozen dataclass on purpose: a frozen `__init__` sets each field through
    `object.__setattr__`, which cost more than a microsecond per request on the fast path.
    """

    method: str
    route: str  # the route template, e.g. "/v1/models/{name}/predict", never the raw path
    status: int
    duration_s: float
    request_id: str
    principal: Principal | None = None
    model: str | None = None
    version: str | None = None
    error_code: str | None = None
    # The request's trace (32 hex digits) when tracing is on.
    trace_id: str | None = None
