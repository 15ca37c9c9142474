"""The predict endpoints, served as a raw ASGI fast path in front of FastAPI.

`POST /v1/models/{name}[/versions/{version}]/predict[/batch]` is the hot path: it skips
Starlette's routing, middleware stack and FastAPI's dependency solver (together most of a plain
FastAPI request's cost) and goes from bytes to the auth guard, strict pydantic-core validation,
the batching engine and pydantic-core serialization. FastAPI still documents these routes (see
`http/openapi.py`), and its handlers call `respond` here, so behaviour cannot drift.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from modelserve.errors import ModelserveError, TooManyHeadersError
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
        if self._guard is not None and principal is None:
            principal = await self._guard.check_predict(headers, name)
        check_media_type(headers)
        payload, extra, _ = await self._predict(
            name, version, is_batch, body, request_id, principal, None
        )
        return 200, extra, payload

    async def _predict(
        self,
        name: str,
        version: str | None,
        is_batch: bool,
        body: bytes,
        request_id: str,
        principal: Principal | None,
        trace: RequestTrace | None,
    ) -> tuple[bytes, Headers, DeployedService]:
        runtime = self._runtime
        sticky = principal.rate_key if principal is not None else None
        deployed = runtime.resolve(name, version, sticky)
        engine = deployed.require_ready()
        codec = self.codec(deployed)
        started = time.perf_counter()
        if is_batch:
            inputs = codec.parse_batch(body)
            if trace is not None:
                trace.mark(tracing.PHASE_VALIDATION)
            results = await engine.submit_many(inputs, trace)
            payload, extra = codec.dump_batch(results)
        else:
            item = codec.parse_one(body)
            if trace is not None:
                trace.mark(tracing.PHASE_VALIDATION)
            output = await engine.submit(item, trace)
            payload, extra = codec.dump(output)
            results = [output]
        if trace is not None:
            trace.mark(tracing.PHASE_ENGINE)
        if version is None:
            mirror = runtime.mirror(name)
            if mirror is not None:
                latency_s = time.perf_counter() - started
                self._background_task(
                    self._run_shadow(
                        deployed, mirror, body, is_batch, results, latency_s, request_id
                    )
                )
        return payload, extra, deployed

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
                principal = self._guard.check_predict_now(headers, name)
                if principal is None:
                    principal = await self._guard.check_predict(headers, name)
                scope[PRINCIPAL_KEY] = principal
                if trace is not None:
                    trace.mark(tracing.PHASE_AUTH)
            check_media_type(headers)
            body = await read_body(receive, headers, self._max_body_bytes)
            if trace is not None:
                trace.mark(tracing.PHASE_READ_BODY)
            payload, extra, deployed = await self._predict(
                name, version, is_batch, body, request_id, principal, trace
            )
            status = 200
        except ModelserveError as exc:
            status, extra, payload = render_error(exc, request_id)
            error_code = status_and_code(exc)[1]
            if status in (413, 431):
                extra.append((b"connection", b"close"))
        except Exception as exc:  # a bug of ours: generic 500, details only in the log
            status, extra, payload = render_error(exc, request_id)
            error_code = "internal_error"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    JSON_HEADER,
                    (b"content-length", str(len(payload)).encode()),
                    (REQUEST_ID_HEADER, request_id.encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
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
                body=body,
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
                shadow_results = [await engine.submit(codec.parse_one(body))]
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
