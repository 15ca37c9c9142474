"""The one predict pipeline: every way in runs the same named steps on one `PredictCall`.

    open -> authenticate -> decode -> admit -> validate -> lookup -> submit -> await (settle)
         -> encode | fail -> report

Each step is one method of `PredictPipeline`, and no adapter repeats one. An adapter only does
what its protocol needs: it opens the call, brings the body, and writes `status`,
`head(call)` and `payload` in its protocol's shape before `report`. Adapters that can await
(the ASGI endpoint and the documentation routes in `http/predict.py` and `http/predict_docs.py`,
the in-process test client in `modelserve.testing`) hand the whole sequence to `run`; the
protocol's task-free path (`PredictEndpoint.serve_now`) calls the same steps without a
coroutine and declines when one would be needed. `prepare` holds the order of the steps
between the body and the engine, so that a step added there (the prediction cache's `lookup`,
between validate and submit: `modelserve.cache`) reaches every adapter at once.

The order is the order of the errors a client sees: too many headers (431), who is calling
(401/403/429: before anything else, so an unauthenticated caller learns nothing, not even
whether the model exists, and costs no body read), the body's size and media type (413, 415),
the version that answers (404, 503 while loading), the input (422/400), the queue (503), the
deadline and the model (504, 500).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from modelserve.auth.guard import refuse_query_credentials
from modelserve.batcher.engine import BatchEngine
from modelserve.cache import Answer, Answers, PredictionCache
from modelserve.errors import ItemRejectedError, ModelserveError, UnsupportedMediaError
from modelserve.http.codec import (
    NON_FINITE_HEADER,
    CodecCache,
    Headers,
    ServiceCodec,
    batch_body,
    check_media_type,
)
from modelserve.http.context import (
    REQUEST_ID_HEADER,
    RequestLimits,
    notify_observers,
    request_id_from,
)
from modelserve.http.errors import render_error, status_and_code
from modelserve.http.shadowing import ShadowMirror
from modelserve.http.wire import WireFormat
from modelserve.observability import tracing
from modelserve.observability.tracing import RequestTrace
from modelserve.runtime.routing import ModelTable
from modelserve.runtime.streaming import ChunkStream, StreamRunner
from modelserve.runtime.versions import DeployedService
from modelserve.types import PredictGuard, Principal, RequestObserver, RequestRecord

if TYPE_CHECKING:
    from modelserve.observability.predlog import PredictionLog

JSON_MEDIA = b"application/json"

# Route templates as observers see them (never raw paths: model names are bounded, paths not).
ROUTE_PREDICT = "/v1/models/{name}/predict"
ROUTE_PREDICT_BATCH = "/v1/models/{name}/predict/batch"
ROUTE_PINNED = "/v1/models/{name}/versions/{version}/predict"
ROUTE_PINNED_BATCH = "/v1/models/{name}/versions/{version}/predict/batch"

# How a cached model's request was answered (docs/cache.md): hit, miss, shared or bypass.
CACHE_HEADER = b"x-cache"
_CACHE_HEADERS = {
    outcome: (CACHE_HEADER, outcome.encode())
    for outcome in ("hit", "miss", "shared", "bypass", "partial")
}


class PredictCall:
    """One predict request on its way through the pipeline, built once by its adapter.

    The steps fill it in order; the outcome is `status`, `extra` (headers beyond the common
    ones, see `PredictPipeline.head`), `payload` and `error_code`. Slots, not a dict: it is the
    one allocation per request the pipeline adds on the fast path.
    """

    __slots__ = (
        "body",
        "cached",
        "codec",
        "deployed",
        "engine",
        "error_code",
        "extra",
        "headers",
        "inputs",
        "is_batch",
        "media",
        "name",
        "payload",
        "principal",
        "query",
        "raw",
        "reached",
        "request_id",
        "route",
        "started",
        "status",
        "trace",
        "version",
        "wire",
        "wire_state",
    )

    def __init__(
        self,
        name: str,
        version: str | None,
        is_batch: bool,
        headers: list[tuple[bytes, bytes]],
        query: bytes,
        request_id: str,
        trace: RequestTrace | None,
        route: str,
        wire: WireFormat | None = None,
    ) -> None:
        self.name = name
        self.version = version  # pinned by the path, else None (the traffic policy chooses)
        self.is_batch = is_batch
        self.headers = headers
        self.query = query
        self.request_id = request_id
        self.trace = trace
        self.route = route  # the route template observers and spans see
        # A protocol's body mapping (V2, OpenAI); None for modelserve's own JSON.
        self.wire = wire
        # What the wire format keeps between `parse` and `dump` (V2: the outputs asked for).
        self.wire_state: Any = None
        self.started = time.perf_counter()
        self.principal: Principal | None = None
        self.body = b""
        self.raw = False  # an application/octet-stream body
        self.deployed: DeployedService | None = None
        self.engine: BatchEngine | None = None
        self.codec: ServiceCodec | None = None
        self.inputs: Any = None
        # True once the inputs went to the version's engine: only then do the access record
        # and the prediction log name the model (a 422 never reached it).
        self.reached = False
        self.status = 500
        self.extra: Headers = []
        self.payload = b""
        self.media = JSON_MEDIA
        self.error_code: str | None = None
        # How the prediction cache answered ("hit", "miss", ...); None when not cached.
        self.cached: str | None = None


class PredictPipeline:
    """The steps of a predict request, for every model version of a runtime's table."""

    def __init__(
        self,
        table: ModelTable,
        codecs: CodecCache,
        *,
        limits: RequestLimits,
        guard: PredictGuard | None = None,
        observers: Sequence[RequestObserver] = (),
        prediction_log: PredictionLog | None = None,
        cache: PredictionCache | None = None,
    ) -> None:
        self.table = table
        # In-process by default: a Service with a `cache_policy` is cached wherever it runs.
        self.cache = cache if cache is not None else PredictionCache()
        self.codecs = codecs
        self.limits = limits
        self.guard = guard
        self.observers = tuple(observers)
        self.predlog = prediction_log
        self.shadows = ShadowMirror(table, codecs)
        self.streams = StreamRunner()

    # -- the steps, in order ---------------------------------------------------------------

    def open(
        self,
        name: str,
        version: str | None,
        is_batch: bool,
        headers: list[tuple[bytes, bytes]],
        query: bytes = b"",
        *,
        wire: WireFormat | None = None,
        route: str | None = None,
    ) -> PredictCall:
        """Start a request: its id, its clock and, with tracing on, its span.

        A protocol adapter passes its `wire` format and its `route` template; its calls are
        batch calls (`is_batch`), whatever the number of rows.
        """
        if route is None:
            route = route_template(version, is_batch)
        trace = tracing.start_request("POST", route, headers) if tracing.enabled else None
        return PredictCall(
            name, version, is_batch, headers, query, request_id_from(headers), trace, route, wire
        )

    def authenticate(self, call: PredictCall) -> bool:
        """The header cap, then who is calling and whether they may (401/403/429).

        True when settled; False when the credential needs I/O (not cached yet, or a shared
        rate limiter): the adapter then awaits `authenticate_later`, or declines.
        """
        self.limits.check_headers(call.headers)
        guard = self.guard
        if guard is None:
            return True
        if call.query:
            refuse_query_credentials(call.query)  # even with a header credential (S8)
        principal = guard.check_predict_now(call.headers, call.name)
        if principal is None:
            return False
        call.principal = principal
        if call.trace is not None:
            call.trace.mark(tracing.PHASE_AUTH)
        return True

    async def authenticate_later(self, call: PredictCall) -> None:
        """`authenticate` for a credential that needs I/O."""
        assert self.guard is not None  # authenticate settles everything without a guard
        call.principal = await self.guard.check_predict(call.headers, call.name)
        if call.trace is not None:
            call.trace.mark(tracing.PHASE_AUTH)

    async def run(self, call: PredictCall, read: Callable[[], Awaitable[bytes]]) -> None:
        """Every step up to the answer, for an adapter that can await: the credential's
        lookup, the body (`read`, after authentication), the engine. The call ends settled
        (`status`, `payload`, ...), never raising; the adapter writes it, then `report`s."""
        try:
            if not self.authenticate(call):
                await self.authenticate_later(call)
            future = self.prepare(call, await read())
            if not future.done():  # an inline model has usually answered already
                with contextlib.suppress(Exception):  # settle reads the failure
                    await future
            self.settle(call, future)
        except Exception as exc:
            self.fail(call, exc)

    async def run_stream(
        self, call: PredictCall, read: Callable[[], Awaitable[bytes]]
    ) -> ChunkStream | None:
        """`run` for a streamed answer (http/streaming.py): the same steps up to validate,
        then `stream` in place of submit. The running stream, or None with the call settled
        as an error; the adapter writes chunks, then `report`s once the stream ends."""
        try:
            if not self.authenticate(call):
                await self.authenticate_later(call)
            self.decode(call, await read())
            self.admit(call)
            self.validate(call)
            return self.stream(call)
        except Exception as exc:
            self.fail(call, exc)
            return None

    def stream(self, call: PredictCall) -> ChunkStream:
        """The submit step's alternative for a streamed answer: `predict_stream` of the one
        input on one of the version's instances (503 + Retry-After past its stream cap)."""
        deployed = call.deployed
        assert deployed is not None  # admitted
        assert call.codec is not None
        # A protocol's calls are batch calls: its streaming formats give exactly one input.
        item = call.inputs[0] if call.wire is not None else call.inputs
        stream = self.streams.open(deployed, item)
        call.reached = True
        call.status = 200
        call.extra = [call.codec.version_header]
        return stream

    def prepare(self, call: PredictCall, body: bytes) -> asyncio.Future[Any]:
        """The steps from a read body to the engine: decode, admit, validate, lookup (the
        prediction cache, for a version that has one), submit.

        Returns the future of the engine's answer; raises what the first failing step raises.
        """
        self.decode(call, body)
        self.admit(call)
        self.validate(call)
        cached = self.lookup(call)
        if cached is not None:
            return cached
        return self.submit(call)

    def decode(self, call: PredictCall, body: bytes) -> None:
        """The body under the size limit (413) in a media type the pipeline reads (415):
        JSON, or application/octet-stream for a model whose input is one bytes field."""
        self.limits.check_body(len(body))
        if call.wire is None:
            call.raw = check_media_type(call.headers)
        else:
            call.wire.check(call)
        call.body = body
        if call.trace is not None:
            call.trace.mark(tracing.PHASE_READ_BODY)

    def admit(self, call: PredictCall) -> None:
        """The version that answers (pinned, or chosen by the traffic policy, sticky by the
        caller's rate key), ready to serve (404; 503 while loading or after a failed load)."""
        principal = call.principal
        deployed = self.table.resolve(
            call.name, call.version, principal.rate_key if principal is not None else None
        )
        call.engine = deployed.require_ready()
        call.deployed = deployed
        call.codec = self.codecs.get(deployed)

    def validate(self, call: PredictCall) -> None:
        """The body strictly validated for the version: one input, or a batch's list (422,
        400 for malformed JSON, 415 for a raw batch)."""
        codec = call.codec
        assert codec is not None  # admitted
        body = call.body
        if call.wire is not None:
            call.inputs = call.wire.parse(call, codec)
        elif call.raw:
            if call.is_batch:
                raise UnsupportedMediaError(
                    "batch requests are JSON: send one raw body per /predict request",
                    details={"content_type": "application/octet-stream"},
                )
            call.inputs = codec.parse_raw(body)
        elif call.is_batch:
            call.inputs = codec.parse_batch(body)
        else:
            call.inputs = codec.parse_one(body)
        if call.trace is not None:
            call.trace.mark(tracing.PHASE_VALIDATION)

    def lookup(self, call: PredictCall) -> asyncio.Future[Any] | None:
        """The prediction cache, for a version whose Service declares a `cache_policy`: the
        future of its stored answer (already done in-process: the fast path stays task-free),
        of an identical request's answer in flight, or of the model's answer, which it
        stores. None for a version that is not cached: the pipeline submits as usual.

        Keyed by the version `admit` picked for this request, so a promotion, rollback or
        canary change never answers from another version's entries (docs/cache.md). A batch
        request is looked up item by item (in-process only); protocol (`call.wire`) requests
        go to the model.
        """
        deployed = call.deployed
        assert deployed is not None  # admitted
        version = self.cache.version(deployed)
        if version is None or call.wire is not None:
            return None
        if call.is_batch and not version.caches_batches:
            return None
        principal = call.principal
        tenant = None if principal is None else principal.owner_id or principal.subject
        codec = call.codec
        assert codec is not None  # admitted

        def encode(result: Any) -> tuple[bytes, bool]:
            payload, extra = codec.dump(result)
            return payload, NON_FINITE_HEADER in extra

        if call.is_batch:
            inputs: list[Any] = call.inputs
            engine = call.engine
            assert engine is not None  # admitted

            def compute(indexes: list[int]) -> asyncio.Future[list[Any]]:
                picked = [inputs[i] for i in indexes]
                return asyncio.ensure_future(engine.submit_many(picked, call.trace))

            call.reached = True
            return version.serve_many(
                [version.key(item, None, tenant) for item in inputs],
                read=self._reads_cache(call),
                compute=compute,
                encode=encode,
            )
        key = version.key(call.inputs, call.body if call.raw else None, tenant)
        if key is None:
            return None
        call.reached = True  # the version answers, from its cache or its engine
        return version.serve(
            key, read=self._reads_cache(call), compute=lambda: self.submit(call), encode=encode
        )

    def _reads_cache(self, call: PredictCall) -> bool:
        """False when the caller sent `Cache-Control: no-cache` and may skip the cache (the
        configured scope; anyone without authentication); anyone else is served as usual."""
        for key, value in call.headers:
            if key == b"cache-control" and b"no-cache" in value.lower():
                principal = call.principal
                return not (
                    principal is None or principal.has_scope(self.cache.config.bypass_scope)
                )
        return True

    def submit(self, call: PredictCall) -> asyncio.Future[Any]:
        """Queue the inputs on the version's engine (503 with Retry-After when it is full).

        One input is a plain future, already done when an inline model answered at once; a
        batch request's items share a deadline and come back together (a task). A batch of
        one row (most V2 requests) takes the one-input path, its answer a list of one.
        """
        engine = call.engine
        assert engine is not None  # admitted
        call.reached = True
        if call.is_batch:
            if len(call.inputs) == 1:
                return _as_list(engine.enqueue(call.inputs[0], call.trace))
            return asyncio.ensure_future(engine.submit_many(call.inputs, call.trace))
        return engine.enqueue(call.inputs, call.trace)

    def settle(self, call: PredictCall, future: asyncio.Future[Any]) -> None:
        """The end of the await step: the engine's answer encoded, or its failure rendered.

        Never raises: a cancelled future, or a bug while encoding, is answered too.
        """
        try:
            result = future.result()
            if call.trace is not None:
                call.trace.mark(tracing.PHASE_ENGINE)
            self.encode(call, result)
        except BaseException as exc:  # CancelledError too: the caller must be answered
            self.fail(call, exc)

    def encode(self, call: PredictCall, result: Any) -> None:
        """A 200: the output (or a batch's outputs and item errors) as JSON with its headers;
        an unpinned request is copied to the shadow version when the policy samples it."""
        codec = call.codec
        assert codec is not None  # admitted
        if type(result) is Answer:  # the prediction cache's: already encoded
            call.payload = result.payload
            call.cached = outcome = result.outcome
            call.extra = [codec.version_header, _CACHE_HEADERS[outcome]]
            if result.non_finite:
                call.extra.append(NON_FINITE_HEADER)
            call.status = 200
            # A hit has no output object to compare: only model answers are mirrored.
            if result.result is not None:
                self.mirror(call, result.result)
            return
        if type(result) is Answers:  # a batch's, item by item from the cache or the model
            call.payload, non_finite, call.cached, outputs = _cached_batch(result)
            call.extra = [codec.version_header, _CACHE_HEADERS[call.cached]]
            if non_finite:
                call.extra.append(NON_FINITE_HEADER)
            call.status = 200
            if outputs is not None:
                self.mirror(call, outputs)
            return
        if call.wire is not None:
            call.payload, call.extra = call.wire.dump(call, codec, result)
        elif call.is_batch:
            call.payload, call.extra = codec.dump_batch(result)
        else:
            call.payload, call.extra = codec.dump(result)
        call.status = 200
        self.mirror(call, result)

    def mirror(self, call: PredictCall, result: Any) -> None:
        """Copy an unpinned request and its answer to the shadow version when the traffic
        policy samples it (pinned requests chose their version: never mirrored)."""
        if call.version is None:
            mirror = self.table.mirror(call.name)
            if mirror is not None:
                self.shadows.offer(call, result, mirror)

    def fail(self, call: PredictCall, exc: BaseException) -> None:
        """The error answer of a failed step: status, the one error body and its code."""
        if call.wire is None:
            status, extra, payload = render_error(exc, call.request_id)
        else:
            call.media = JSON_MEDIA  # a protocol's error bodies are JSON, whatever its 200s are
            status, extra, payload = render_error(exc, call.request_id, call.wire.error_body)
        if isinstance(exc, ModelserveError):
            call.error_code = status_and_code(exc)[1]
            if status in (413, 431):
                # Refused before the body was read (ASGI) or with more of it possibly on
                # the way: the connection cannot be trusted to be at a request boundary.
                extra.append((b"connection", b"close"))
        else:  # a bug of ours: generic 500, details only in the log
            call.error_code = "internal_error"
        call.status, call.extra, call.payload = status, extra, payload

    def head(self, call: PredictCall, *, streamed: bool = False) -> Headers:
        """The response headers of the call's answer (uvicorn adds its own defaults); a
        `streamed` answer's length is unknown (chunked) and no proxy may cache or buffer it."""
        if streamed:
            return [
                (b"content-type", call.media),
                (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no"),
                (REQUEST_ID_HEADER, call.request_id.encode()),
                *call.extra,
            ]
        return [
            (b"content-type", call.media),
            (b"content-length", str(len(call.payload)).encode()),
            (REQUEST_ID_HEADER, call.request_id.encode()),
            *call.extra,
        ]

    def report(self, call: PredictCall) -> None:
        """Tell the trace, the prediction log and the observers how the request ended; call
        once the answer is written."""
        deployed = call.deployed if call.reached else None
        version = deployed.spec.version if deployed is not None else None
        model = call.name if deployed is not None else None
        status = call.status
        trace = call.trace
        if trace is not None:
            trace.finish(
                status,
                request_id=call.request_id,
                model=model,
                version=version,
                principal=call.principal,
                error_code=call.error_code,
            )
        predlog = self.predlog
        if predlog is not None and version is not None and predlog.wants(call.name):
            predlog.offer(
                model=call.name,
                version=version,
                request_id=call.request_id,
                principal=call.principal,
                status=status,
                latency_s=time.perf_counter() - call.started,
                # The log's input column is JSON text: a raw body (an image, say) is recorded
                # by size and digest, never as bytes a text column would mangle or refuse.
                body=raw_summary(call.body) if call.raw else call.body,
                output=call.payload if status == 200 else None,
                error_code=call.error_code,
                cached=call.cached,
            )
        if self.observers:
            record = RequestRecord(
                "POST",
                call.route,
                status,
                time.perf_counter() - call.started,
                call.request_id,
                call.principal,
                model,
                version,
                call.error_code,
                trace.trace_id if trace is not None else None,
            )
            notify_observers(self.observers, record)


def _as_list(future: asyncio.Future[Any]) -> asyncio.Future[Any]:
    """One input's future as a batch's (`BatchEngine.submit_many`'s answer for one item): its
    output, or the ItemRejectedError the model returned for it, in a list; other errors as
    they are. Without a task, so an inline model's answer is still ready at once."""
    listed: asyncio.Future[Any] = future.get_loop().create_future()

    def copy(done: asyncio.Future[Any]) -> None:
        if listed.done():
            return
        if done.cancelled():
            listed.cancel()
            return
        exc = done.exception()
        if exc is None:
            listed.set_result([done.result()])
        elif isinstance(exc, ItemRejectedError):
            listed.set_result([exc])
        else:
            listed.set_exception(exc)

    def forward_cancel(outer: asyncio.Future[Any]) -> None:
        if outer.cancelled():  # as awaiting the input's own future would have
            future.cancel()

    if future.done():
        copy(future)
    else:
        future.add_done_callback(copy)
        listed.add_done_callback(forward_cancel)
    return listed


def _cached_batch(results: Answers) -> tuple[bytes, bool, str, list[Any] | None]:
    """A batch answer from the cache's items, in `ServiceCodec.dump_batch`'s shape: the body,
    whether an output held a non-finite number, the outcome (`hit` when every item was one,
    `partial` when some were, else `miss` or `bypass`) and, when no item was a hit, the outputs
    for a shadow copy."""
    answers = [r for r in results if isinstance(r, Answer)]
    non_finite = any(a.non_finite for a in answers)
    outcomes = {a.outcome for a in answers}
    payload = batch_body(results, _answer_payload)
    if "hit" in outcomes:
        outcome = "hit" if outcomes == {"hit"} else "partial"
    else:  # a repeated item's "shared" answer was computed by this request too
        outcome = "bypass" if "bypass" in outcomes else "miss"
    outputs = None
    if "hit" not in outcomes:
        outputs = [r.result if isinstance(r, Answer) else r for r in results]
    return payload, non_finite, outcome, outputs


def _answer_payload(result: Any) -> bytes:
    if not isinstance(result, Answer):  # submit_many answers outputs or rejections only
        raise TypeError(f"unexpected batch item result {type(result).__name__}")
    return result.payload


def route_template(version: str | None, is_batch: bool) -> str:
    """The route template of a predict request, as observers and spans name it."""
    if version is None:
        return ROUTE_PREDICT_BATCH if is_batch else ROUTE_PREDICT
    return ROUTE_PINNED_BATCH if is_batch else ROUTE_PINNED


def raw_summary(body: bytes) -> bytes:
    """What the prediction log keeps of a raw body: its type, size and SHA-256."""
    digest = hashlib.sha256(body).hexdigest()
    return b'{"content_type":"application/octet-stream","bytes":%d,"sha256":"%s"}' % (
        len(body),
        digest.encode(),
    )
