"""The predict routes' adapters onto the one pipeline (`http/pipeline.py`).

`POST /v1/models/{name}[/versions/{version}]/predict[/batch]` is the hot path: it skips
Starlette's routing, middleware stack and FastAPI's dependency solver (together most of a plain
FastAPI request's cost). Two adapters serve it, and the documentation routes reuse the second:

- `serve_now`: modelserve's HTTP protocol hands over a one-input request whose body is
  complete; it is answered without a task or a coroutine (see `http/protocol.py`);
- `__call__`: plain ASGI, for everything else (batches, large or chunked bodies, a credential
  that needs a lookup, tracing, CORS, another server); `ModelserveApp.dispatch` calls it before
  FastAPI, and the FastAPI routes that document these paths (`http/predict_docs.py`) run it too.

Neither implements a step: each opens a `PredictCall`, runs the pipeline's steps, and writes the
answer in its protocol's shape; the pipeline reports it. Request ids, limits, the access record
and the span are the pipeline's here, never the FastAPI middleware's: predict requests are
dispatched before that middleware.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from modelserve.cache import PredictionCache
from modelserve.http.codec import CodecCache, Headers, ServiceCodec
from modelserve.http.context import (
    DEFAULT_MAX_HEADERS,
    PRINCIPAL_KEY,
    REQUEST_ID_KEY,
    RequestLimits,
    read_body,
)
from modelserve.http.pipeline import PredictCall, PredictPipeline
from modelserve.runtime.manager import DeployedService, ModelRuntime
from modelserve.types import PredictGuard, Receive, RequestObserver, Scope, Send

if TYPE_CHECKING:
    from modelserve.observability.predlog import PredictionLog

PREFIX = "/v1/models/"

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
    """The predict routes of every model version of a ModelRuntime: the protocol's and the ASGI
    adapter over one `PredictPipeline`."""

    def __init__(
        self,
        runtime: ModelRuntime,
        *,
        max_body_bytes: int,
        max_batch_inputs: int,
        max_headers: int = DEFAULT_MAX_HEADERS,
        guard: PredictGuard | None = None,
        observers: Sequence[RequestObserver] = (),
        prediction_log: PredictionLog | None = None,
        cache: PredictionCache | None = None,
    ) -> None:
        self.pipeline = PredictPipeline(
            runtime.table,
            CodecCache(max_batch_inputs=max_batch_inputs),
            limits=RequestLimits(max_body_bytes=max_body_bytes, max_headers=max_headers),
            guard=guard,
            observers=observers,
            prediction_log=prediction_log,
            cache=cache,
        )

    def codec(self, deployed: DeployedService) -> ServiceCodec:
        """The codec of a loaded version (built on first use; the jobs gateway and the
        documentation read it here)."""
        return self.pipeline.codecs.get(deployed)

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        name: str,
        version: str | None,
        is_batch: bool,
    ) -> None:
        """The ASGI adapter: the steps with their I/O awaited, the answer as two messages."""
        pipeline = self.pipeline
        call = pipeline.open(name, version, is_batch, scope["headers"], scope["query_string"])
        await serve_asgi(pipeline, call, scope, receive, send)

    def serve_now(
        self,
        name: str,
        version: str | None,
        scope: Scope,
        body: bytes,
        respond: Responder,
    ) -> bool:
        """The protocol's adapter: a one-input request whose body is complete, no coroutine.

        For modelserve's HTTP protocol (`http/protocol.py`), which calls it instead of starting
        an ASGI task. `respond(status, headers, body)` is called once: before this returns when
        the answer is ready (an inline model, or an error), else from the engine future's
        done-callback. Returns False, having answered nothing, when the credential needs a
        lookup: the caller then serves the request through `__call__`, which awaits it.
        """
        pipeline = self.pipeline
        call = pipeline.open(name, version, False, scope["headers"], scope["query_string"])
        return serve_now(pipeline, call, body, respond)

    def asgi_route(
        self, name: str | None, version: str | None, is_batch: bool
    ) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        """An ASGI app serving one predict route through `__call__`: the documentation
        routes' own app. A `name` or `version` of None is read from the path parameters."""

        async def serve(scope: Scope, receive: Receive, send: Send) -> None:
            params = scope.get("path_params", {})
            await self(
                scope,
                receive,
                send,
                name if name is not None else params["name"],
                version if version is not None else params.get("version"),
                is_batch,
            )

        return serve

    @property
    def background(self) -> int:
        """Shadow copies still running (for tests that wait for them)."""
        return self.pipeline.shadows.running


def serve_now(
    pipeline: PredictPipeline, call: PredictCall, body: bytes, respond: Responder
) -> bool:
    """An opened call served on the protocol's task-free path (predict, V2 infer): the steps
    without a coroutine, `respond` called once (now, or from the engine future's callback).
    False, having answered nothing, when the credential needs a lookup (serve it over ASGI)."""
    try:
        if not pipeline.authenticate(call):
            return False
        future = pipeline.prepare(call, body)
    except Exception as exc:
        pipeline.fail(call, exc)
        respond(call.status, pipeline.head(call), call.payload)
        pipeline.report(call)
        return True
    if future.done():
        _settle(pipeline, call, respond, future)
    else:
        future.add_done_callback(lambda done: _settle(pipeline, call, respond, done))
    return True


async def serve_asgi(
    pipeline: PredictPipeline, call: PredictCall, scope: Scope, receive: Receive, send: Send
) -> None:
    """An opened call served over ASGI (every adapter that can await: predict, V2 infer): the
    pipeline's steps with the body read after authentication, then the settled answer."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    scope[REQUEST_ID_KEY] = call.request_id
    await pipeline.run(call, lambda: read_body(receive, headers, pipeline.limits.max_body_bytes))
    if call.principal is not None:
        scope[PRINCIPAL_KEY] = call.principal
    await answer_settled(send, pipeline, call)


async def answer_settled(send: Send, pipeline: PredictPipeline, call: PredictCall) -> None:
    """A settled call (an error, or a whole 200) written as one answer, then reported."""
    await send(
        {"type": "http.response.start", "status": call.status, "headers": pipeline.head(call)}
    )
    await send({"type": "http.response.body", "body": call.payload})
    pipeline.report(call)


def _settle(
    pipeline: PredictPipeline,
    call: PredictCall,
    respond: Responder,
    future: asyncio.Future[Any],
) -> None:
    """The task-free path's end: the engine's answer settled, written, reported."""
    pipeline.settle(call, future)
    respond(call.status, pipeline.head(call), call.payload)
    pipeline.report(call)
