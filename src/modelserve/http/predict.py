"""The predict endpoints, served as a raw ASGI fast path in front of FastAPI.

`POST /v1/models/{name}[/versions/{version}]/predict[/batch]` is the hot path: it skips
Starlette's routing, middleware stack and FastAPI's dependency solver (together most of a plain
FastAPI request's cost) and goes from bytes to the auth guard, strict pydantic-core validation,
the batching engine and pydantic-core serialization. FastAPI still documents these routes (see
`http/openapi.py`), and its handlers call `respond` here, so behaviour cannot drift.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from modelserve.auth.guard import refuse_query_credentials
from modelserve.batcher.engine import BatchEngine
from modelserve.errors import ModelserveError, TooManyHeadersError, UnsupportedMediaError
from modelserve.http.codec import Headers, ServiceCodec, check_media_type
from modelserve.http.context import (
    PRINCIPAL_KEY,
    REQUEST_ID_HEADER,
    REQUEST_ID_KEY,
    read_body,
    request_id_from,
)
from modelserve.http.errors import render_error, status_and_code
from modelserve.observability import tracing
from modelserve.observability.tracing import RequestTrace
from modelserve.runtime import shadow
from modelserve.runtime.manager import DeployedService, ModelRuntime
from modelserve.types import (
    PredictGuard,
    Principal,
    Receive,
    RequestObserver,
    RequestRecord,
    Scope,
    Send,
)

if TYPE_CHECKING:
    from modelserve.observability.predlog import PredictionLog

logger = logging.getLogger("modelserve.http")

PREFIX = "/v1/models/"
JSON_HEADER = (b"content-type", b"application/json")

# Route templates as observers see them (never raw paths: model names are bounded, paths not).
ROUTE_PREDICT = "/v1/models/{name}/predict"
ROUTE_PREDICT_BATCH = "/v1/models/{name}/predict/batch"
ROUTE_PINNED = "/v1/models/{name}/versions/{version}/predict"
ROUTE_PINNED_BATCH = "/v1/models/{name}/versions/{version}/predict/batch"

Match = tuple[str, str | None, bool]
# Writes a whole answer: status, headers, body.
Responder = Callable[[int, Headers, bytes], None]


def match(path: str) -> Match | None:
    """(model name, pinned version or None, is_batch) for a predict path, else None."""
    if not path.startswith(PREFIX):
        return None
    parts = path[len(PREFIX) :].split("/")
    if not parts[0]:
        return None
    if len(parts) == 2 and parts[1] == "predict":
        return parts[0], None, False
    if len(parts) == 3 and parts[1:] == ["predict", "batch"]:
        return parts[0], None, True
    if len(parts) >= 4 and parts[1] == "versions" and parts[2] and parts[3] == "predict":
        if len(parts) == 4:
            return parts[0], parts[2], False
        if len(parts) == 5 and parts[4] == "batch":
            return parts[0], parts[2], True
    return None


class PredictEndpoint:
    """Handles the predict routes for every model version of a ModelRuntime."""

    def __init__(
        self,
        runtime: ModelRuntime,
        *,
        max_body_bytes: int,
        max_batch_inputs: int,
        max_headers: int = 100,
        guard: PredictGuard | None = None,
        observers: Sequence[RequestObserver] = (),
        prediction_log: PredictionLog | None = None,
    ) -> None:
        self._runtime = runtime
        self._max_body_bytes = max_body_bytes
        self._max_batch_inputs = max_batch_inputs
        self._max_headers = max_headers
        self._guard = guard
        self._observers = tuple(observers)
        self._predlog = prediction_log
        self._background: set[asyncio.Task[None]] = set()

    def codec(self, deployed: DeployedService) -> ServiceCodec:
        """The codec of a loaded version (built on first use)."""
        # Kept on the version itself: it goes when a retired version does (R4).
        codec = deployed.wire
        if codec is None:
            codec = deployed.wire = ServiceCodec(
                deployed.spec, max_batch_inputs=self._max_batch_inputs
            )
        return cast(ServiceCodec, codec)

    async def respond(
        self,
        name: str,
        version: str | None,
        is_batch: bool,
        body: bytes,
        headers: Headers,
        *,
        request_id: str,
        principal: Principal | None = None,
    ) -> tuple[int, Headers, bytes]:
        """Status, headers and body for a predict call whose body is already read."""
        started = time.perf_counter()
        if self._guard is not None and principal is None:
            principal = await self._guard.check_predict(headers, name)
        raw = check_media_type(headers)
        deployed, engine, codec, parsed = self._prepare(
            name, version, is_batch, body, principal, raw
        )
        if is_batch:
            result = await engine.submit_many(parsed)
        else:
            result = await engine.submit(parsed)
        payload, extra = self._reply(
            deployed, codec, is_batch, body, result, version, request_id, started, raw
        )
        return 200, extra, payload

    def _prepare(
        self,
        name: str,
        version: str | None,
        is_batch: bool,
        body: bytes,
        principal: Principal | None,
        raw: bool = False,
    ) -> tuple[DeployedService, BatchEngine, ServiceCodec, Any]:
        """The version that answers, its engine and codec, and the body validated for it (one
        input, or the list of a batch request); `raw` for an application/octet-stream body."""
        sticky = principal.rate_key if principal is not None else None
        deployed = self._runtime.resolve(name, version, sticky)
        engine = deployed.require_ready()
        codec = self.codec(deployed)
        parsed = _parse(codec, body, is_batch, raw)
        return deployed, engine, codec, parsed

    def _reply(
        self,
        deployed: DeployedService,
        codec: ServiceCodec,
        is_batch: bool,
        body: bytes,
        result: Any,
        version: str | None,
        request_id: str,
        started: float,
        raw: bool = False,
    ) -> tuple[bytes, Headers]:
        """The 200 body and headers; copies the request to a shadow version when sampled."""
        payload, extra = codec.dump_batch(result) if is_batch else codec.dump(result)
        if version is None:
            mirror = self._runtime.mirror(deployed.spec.name)
            if mirror is not None:
                self._background_task(
                    self._run_shadow(
                        deployed,
                        mirror,
                        body,
                        is_batch,
                        result if is_batch else [result],
                        time.perf_counter() - started,
                        request_id,
                        raw,
                    )
                )
        return payload, extra

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        name: str,
        version: str | None,
        is_batch: bool,
    ) -> None:
        started = time.perf_counter()
        headers: Headers = scope["headers"]
        request_id = request_id_from(headers)
        scope[REQUEST_ID_KEY] = request_id
        principal: Principal | None = None
        deployed: DeployedService | None = None
        error_code: str | None = None
        body = b""
        raw = False
        extra: Headers
        trace = (
            tracing.start_request("POST", _route(version, is_batch), headers)
            if tracing.enabled
            else None
        )
        try:
            if len(headers) > self._max_headers:
                raise TooManyHeadersError(f"request has more than {self._max_headers} headers")
            if self._guard is not None:
                # Before anything else, so an unauthenticated caller learns nothing (not even
                # whether the model exists) and costs no body read.
                # Synchronous for a cached credential: no coroutine on the common path.
                query = scope["query_string"]
                if query:
                    refuse_query_credentials(query)  # even with a header credential (S8)
                principal = self._guard.check_predict_now(headers, name)
                if principal is None:
                    principal = await self._guard.check_predict(headers, name)
                scope[PRINCIPAL_KEY] = principal
                if trace is not None:
                    trace.mark(tracing.PHASE_AUTH)
            raw = check_media_type(headers)
            body = await read_body(receive, headers, self._max_body_bytes)
            if trace is not None:
                trace.mark(tracing.PHASE_READ_BODY)
            deployed, engine, codec, parsed = self._prepare(
                name, version, is_batch, body, principal, raw
            )
            if trace is not None:
                trace.mark(tracing.PHASE_VALIDATION)
            # Written out rather than behind a helper coroutine: every coroutine level between
            # the request and the engine's future costs on the way down and on resumption.
            if is_batch:
                result = await engine.submit_many(parsed, trace)
            else:
                future = engine.enqueue(parsed, trace)
                # An inline model has usually answered already: no suspension at all.
                result = future.result() if future.done() else await future
            if trace is not None:
                trace.mark(tracing.PHASE_ENGINE)
            payload, extra = self._reply(
                deployed, codec, is_batch, body, result, version, request_id, started, raw
            )
            status = 200
        except Exception as exc:
            status, extra, payload, error_code = _failure(exc, request_id)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": _head(payload, request_id, extra),
            }
        )
        await send({"type": "http.response.body", "body": payload})
        self._report(
            name,
            version,
            is_batch,
            status,
            started,
            request_id,
            principal,
            deployed,
            error_code,
            body,
            payload,
            trace,
            raw,
        )

    def serve_now(
        self,
        name: str,
        version: str | None,
        scope: Scope,
        body: bytes,
        respond: Responder,
    ) -> bool:
        """Answer a one-input predict request whose body is complete, without a coroutine.

        For modelserve's HTTP protocol (`http/protocol.py`), which calls it instead of starting
        an ASGI task. `respond(status, headers, body)` is called once: before this returns when
        the answer is ready (an inline model, or an error), else when the engine's future
        completes. Returns False, having done nothing, when the request needs the ASGI path
        (a credential not cached yet, an over-long body or header list): the caller then
        serves it the ordinary way, which reaches the same answer.
        """
        headers: Headers = scope["headers"]
        if len(headers) > self._max_headers or len(body) > self._max_body_bytes:
            return False
        started = time.perf_counter()
        principal: Principal | None = None
        request_id = request_id_from(headers)
        raw = False
        try:
            if self._guard is not None:
                query = scope["query_string"]
                if query:
                    refuse_query_credentials(query)  # as `__call__` does (S8)
                principal = self._guard.check_predict_now(headers, name)
                if principal is None:
                    return False  # needs I/O: the ASGI path awaits the lookup
            raw = check_media_type(headers)
            deployed, engine, codec, parsed = self._prepare(
                name, version, False, body, principal, raw
            )
            future = engine.enqueue(parsed)
        except Exception as exc:
            outcome = _failure(exc, request_id)
            self._answer(
                respond, name, version, started, request_id, principal, None, body, raw, *outcome
            )
            return True

        def settle(future: asyncio.Future[Any]) -> None:
            try:
                payload, extra = self._reply(
                    deployed,
                    codec,
                    False,
                    body,
                    future.result(),
                    version,
                    request_id,
                    started,
                    raw,
                )
                outcome: tuple[int, Headers, bytes, str | None] = (200, extra, payload, None)
            except BaseException as exc:  # CancelledError too: the caller must be answered
                outcome = _failure(exc, request_id)
            self._answer(
                respond,
                name,
                version,
                started,
                request_id,
                principal,
                deployed,
                body,
                raw,
                *outcome,
            )

        if future.done():
            settle(future)
        else:
            future.add_done_callback(settle)
        return True

    def _answer(
        self,
        respond: Responder,
        name: str,
        version: str | None,
        started: float,
        request_id: str,
        principal: Principal | None,
        deployed: DeployedService | None,
        body: bytes,
        raw: bool,
        status: int,
        extra: Headers,
        payload: bytes,
        error_code: str | None,
    ) -> None:
        """Write a `serve_now` answer and report it."""
        respond(status, _head(payload, request_id, extra), payload)
        self._report(
            name,
            version,
            False,
            status,
            started,
            request_id,
            principal,
            deployed,
            error_code,
            body,
            payload,
            None,
            raw,
        )

    def _report(
        self,
        name: str,
        version: str | None,
        is_batch: bool,
        status: int,
        started: float,
        request_id: str,
        principal: Principal | None,
        deployed: DeployedService | None,
        error_code: str | None,
        body: bytes,
        payload: bytes,
        trace: RequestTrace | None,
        raw: bool = False,
    ) -> None:
        """Tell the trace, the prediction log and the observers how a request ended."""
        version_served = deployed.spec.version if deployed is not None else None
        if trace is not None:
            trace.finish(
                status,
                request_id=request_id,
                model=name if deployed is not None else None,
                version=version_served,
                principal=principal,
                error_code=error_code,
            )
        predlog = self._predlog
        if predlog is not None and version_served is not None and predlog.wants(name):
            predlog.offer(
                model=name,
                version=version_served,
                request_id=request_id,
                principal=principal,
                status=status,
                latency_s=time.perf_counter() - started,
                # The log's input column is JSON text: a raw body (an image, say) is recorded
                # by size and digest, never as bytes a text column would mangle or refuse.
                body=_raw_summary(body) if raw else body,
                output=payload if status == 200 else None,
                error_code=error_code,
            )
        if self._observers:
            record = RequestRecord(
                "POST",
                _route(version, is_batch),
                status,
                time.perf_counter() - started,
                request_id,
                principal,
                name if deployed is not None else None,
                version_served,
                error_code,
                trace.trace_id if trace is not None else None,
            )
            for observer in self._observers:
                try:
                    observer.on_request(record)
                except Exception:  # an observer must never break serving
                    logger.exception("request observer failed")

    # -- shadow traffic ---------------------------------------------------------------------

    def _background_task(self, coro: Any) -> None:
        # Held until done: the loop keeps only weak references to tasks.
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run_shadow(
        self,
        primary: DeployedService,
        mirror: DeployedService,
        body: bytes,
        is_batch: bool,
        results: list[Any],
        primary_latency_s: float,
        request_id: str,
        raw: bool = False,
    ) -> None:
        # Never affects the answer already sent: every failure becomes part of the record.
        name = primary.spec.name
        primary_out = [_plain(r) for r in results]
        started = time.perf_counter()
        try:
            engine = mirror.require_ready()
            codec = self.codec(mirror)
            if is_batch:
                shadow_results = await engine.submit_many(codec.parse_batch(body))
            else:
                shadow_results = [await engine.submit(_parse(codec, body, False, raw))]
            entry = shadow.record(
                request_id=request_id,
                primary_version=primary.spec.version,
                shadow_version=mirror.spec.version,
                primary_output=primary_out,
                primary_latency_s=primary_latency_s,
                shadow_output=[_plain(r) for r in shadow_results],
                shadow_latency_s=time.perf_counter() - started,
            )
        except Exception as exc:
            entry = shadow.record(
                request_id=request_id,
                primary_version=primary.spec.version,
                shadow_version=mirror.spec.version,
                primary_output=primary_out,
                primary_latency_s=primary_latency_s,
                error=type(exc).__name__,
            )
        self._runtime.record_shadow(name, entry)


def _raw_summary(body: bytes) -> bytes:
    """What the prediction log keeps of a raw body: its type, size and SHA-256."""
    digest = hashlib.sha256(body).hexdigest()
    return b'{"content_type":"application/octet-stream","bytes":%d,"sha256":"%s"}' % (
        len(body),
        digest.encode(),
    )


def _parse(codec: ServiceCodec, body: bytes, is_batch: bool, raw: bool) -> Any:
    """The body validated for the version: a batch's inputs, or one input (JSON or raw)."""
    if raw:
        if is_batch:
            raise UnsupportedMediaError(
                "batch requests are JSON: send one raw body per /predict request",
                details={"content_type": "application/octet-stream"},
            )
        return codec.parse_raw(body)
    return codec.parse_batch(body) if is_batch else codec.parse_one(body)


def _failure(exc: BaseException, request_id: str) -> tuple[int, Headers, bytes, str]:
    """Status, extra headers, body and error code of a failed predict request."""
    status, extra, payload = render_error(exc, request_id)
    if isinstance(exc, ModelserveError):
        error_code = status_and_code(exc)[1]
        if status in (413, 431):
            extra.append((b"connection", b"close"))
    else:  # a bug of ours: generic 500, details only in the log
        error_code = "internal_error"
    return status, extra, payload, error_code


def _head(payload: bytes, request_id: str, extra: Headers) -> Headers:
    """The response headers of a predict answer."""
    return [
        JSON_HEADER,
        (b"content-length", str(len(payload)).encode()),
        (REQUEST_ID_HEADER, request_id.encode()),
        *extra,
    ]


def _route(version: str | None, is_batch: bool) -> str:
    if version is None:
        return ROUTE_PREDICT_BATCH if is_batch else ROUTE_PREDICT
    return ROUTE_PINNED_BATCH if is_batch else ROUTE_PINNED


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(mode="json")
    if isinstance(value, ModelserveError):
        return {"error": type(value).__name__}
    return value
