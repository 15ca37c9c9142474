"""Streamed answers: a Service's `predict_stream` chunks as server-sent events or JSON lines.

`POST /v1/models/{name}[/versions/{version}]/predict?stream=true` (or with `Accept:
text/event-stream`) answers `text/event-stream`: one `data: <chunk JSON>` event per chunk, an
`event: done` at the end, `event: error` with modelserve's error body when the model fails or
the server stops first, and a `: heartbeat` comment after `http.stream_heartbeat_s` without a
chunk. `Accept: application/x-ndjson` answers one chunk per line instead (an error is a line
`{"error": {...}}`).

The request runs the pipeline's steps (`PredictPipeline.run_stream`: authenticate, decode,
admit, validate, then `stream` in place of submit); an error up to the first chunk is an
ordinary error answer with its status. `StreamSession` is what every streaming adapter (this
one, the OpenAI routes) reads chunks through: it cancels the generator when the client
disconnects, and when the server begins its graceful shutdown it lets the stream run until
shortly before the graceful timeout, then ends it with an error event, never a silent cut.
Writing waits for the socket (uvicorn's flow control) and the generator makes a chunk only once
the previous one was taken, so a slow reader holds the generator, not the server's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import pydantic_core

from modelserve.errors import OutputMismatchError, ServiceUnavailableError
from modelserve.http.connections import grace_left, shutdown_began
from modelserve.http.context import REQUEST_ID_KEY, read_body
from modelserve.http.pipeline import PredictCall, PredictPipeline
from modelserve.http.predict import answer_settled
from modelserve.runtime.streaming import END, IDLE, ChunkStream
from modelserve.types import Receive, Scope, Send

SSE_MEDIA = b"text/event-stream"
NDJSON_MEDIA = b"application/x-ndjson"
HEARTBEAT = b": heartbeat\n\n"
# How often a waiting stream looks at the server's shutdown clock.
POLL_S = 0.25
# A stream still running at shutdown ends this long before the graceful timeout (at most a
# quarter of it), so its error event is written before uvicorn cancels what is left.
SHUTDOWN_MARGIN_S = 0.5
TRUE = frozenset({b"true", b"1", b"yes"})


def stream_media(headers: list[tuple[bytes, bytes]], query: bytes) -> bytes | None:
    """The media type a predict request asks its answer to stream in, or None: `stream=true`
    in the query, or an Accept header naming `text/event-stream` or `application/x-ndjson`."""
    accept = b""
    for name, value in headers:
        if name == b"accept":
            accept = value.lower()
            break
    if NDJSON_MEDIA in accept:
        return NDJSON_MEDIA
    if SSE_MEDIA in accept:
        return SSE_MEDIA
    if query and b"stream=" in query:
        for pair in query.split(b"&"):
            key, _, value = pair.partition(b"=")
            if key == b"stream" and value.lower() in TRUE:
                return SSE_MEDIA
    return None


def encode_chunk(chunk: Any) -> bytes:
    """One chunk as JSON: a str, a pydantic model or JSON-ready data."""
    return pydantic_core.to_json(chunk)


def sse_event(data: bytes, event: bytes | None = None) -> bytes:
    """One server-sent event (`data` is one line of JSON)."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event + b"\ndata: " + data + b"\n\n"


class StreamSession:
    """One stream being written to an ASGI connection: its chunks, idle ticks, its end.

    `next` returns a chunk, `IDLE` after `heartbeat_s` without one (write a heartbeat), or
    `END`; it raises a `ModelserveError` when the model failed or when the server's shutdown
    leaves no more time. `close` (always, in a `finally`) cancels the generator if it runs.
    """

    def __init__(
        self,
        stream: ChunkStream,
        receive: Receive,
        call: PredictCall,
        pipeline: PredictPipeline,
        *,
        heartbeat_s: float,
        graceful_timeout_s: float,
    ) -> None:
        self.stream = stream
        self.call = call
        self.heartbeat_s = heartbeat_s
        self.graceful_timeout_s = graceful_timeout_s
        self.disconnected = False
        self.chunks = 0
        self._first = True
        self._closed = False
        self._watch = asyncio.get_running_loop().create_task(self._watch_disconnect(receive))
        self._hooks = _stream_hooks(pipeline)
        deployed = call.deployed
        assert deployed is not None  # a stream only opens on an admitted call
        self._labels = (deployed.spec.name, deployed.spec.version)
        for hook in self._hooks[0]:
            hook(*self._labels)

    async def _watch_disconnect(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                self.stream.cancel()  # the generator stops at its next yield
                return

    async def next(self) -> Any:
        """The next chunk, `IDLE` or `END` (see the class)."""
        idle_since = time.monotonic()
        while True:
            if self.disconnected:
                return END
            wait = POLL_S
            if shutdown_began():
                left = grace_left(self.graceful_timeout_s) - min(
                    SHUTDOWN_MARGIN_S, self.graceful_timeout_s / 4
                )
                if left <= 0:
                    self.stream.cancel()
                    raise ServiceUnavailableError(
                        "the server is shutting down: the stream ended before the model finished"
                    )
                wait = min(wait, left)
            idle_left = self.heartbeat_s - (time.monotonic() - idle_since)
            if idle_left <= 0:
                return IDLE
            chunk = await self.stream.next(min(wait, idle_left))
            if chunk is IDLE:
                continue
            if chunk is not END:
                self.chunks += 1
                if self._first:
                    self._first = False
                    for hook in self._hooks[1]:
                        hook(*self._labels, time.perf_counter() - self.call.started)
                for hook in self._hooks[2]:
                    hook(*self._labels)
            return chunk

    def close(self) -> None:
        """Stop the generator (when still running) and the disconnect watch (idempotent)."""
        self.stream.cancel()
        self._watch.cancel()
        if not self._closed:
            self._closed = True
            for hook in self._hooks[3]:
                hook(*self._labels)


Hooks = list[Callable[..., None]]
HOOK_NAMES = ("on_stream_open", "on_stream_first_chunk", "on_stream_chunk", "on_stream_close")


def _stream_hooks(pipeline: PredictPipeline) -> tuple[Hooks, ...]:
    """The observers' optional stream hooks, by `HOOK_NAMES` (the metrics observer has them)."""
    return tuple(
        [hook for o in pipeline.observers if (hook := getattr(o, name, None)) is not None]
        for name in HOOK_NAMES
    )


async def first_chunk(session: StreamSession, pipeline: PredictPipeline) -> Any:
    """The stream's first chunk (or `IDLE`/`END`), or None with the call settled as an error:
    a model that fails before its first chunk gets an ordinary error answer."""
    try:
        return await session.next()
    except Exception as exc:
        pipeline.fail(session.call, exc)
        session.close()
        return None


class StreamEndpoint:
    """The streamed predict route: `run_stream`, then chunks as SSE or NDJSON events."""

    def __init__(
        self, pipeline: PredictPipeline, *, heartbeat_s: float, graceful_timeout_s: float
    ) -> None:
        self.pipeline = pipeline
        self.heartbeat_s = heartbeat_s
        self.graceful_timeout_s = graceful_timeout_s

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        name: str,
        version: str | None,
        media: bytes,
    ) -> None:
        """Serve one streamed predict request."""
        pipeline = self.pipeline
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        call = pipeline.open(name, version, False, headers, scope["query_string"])
        scope[REQUEST_ID_KEY] = call.request_id
        stream = await pipeline.run_stream(
            call, lambda: read_body(receive, headers, pipeline.limits.max_body_bytes)
        )
        if stream is None:
            await answer_settled(send, pipeline, call)
            return
        session = self.session(stream, receive, call)
        chunk = await first_chunk(session, pipeline)
        if chunk is None:
            await answer_settled(send, pipeline, call)
            return
        call.media = media
        sse = media == SSE_MEDIA
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": pipeline.head(call, streamed=True),
                }
            )
            while chunk is not END:
                if chunk is IDLE:
                    if sse:  # a JSON-lines reader has no comments: it gets nothing
                        await send(
                            {"type": "http.response.body", "body": HEARTBEAT, "more_body": True}
                        )
                else:
                    try:
                        data = encode_chunk(chunk)
                    except Exception:
                        bad = OutputMismatchError("predict_stream yielded a chunk that is not JSON")
                        await send_error(send, pipeline, call, bad, sse)
                        break
                    body = sse_event(data) if sse else data + b"\n"
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                try:
                    chunk = await session.next()
                except Exception as exc:
                    await send_error(send, pipeline, call, exc, sse)
                    break
            else:
                if sse and not session.disconnected:
                    await send(
                        {
                            "type": "http.response.body",
                            "body": sse_event(b"{}", b"done"),
                            "more_body": True,
                        }
                    )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            session.close()
            finish(call, session)
            pipeline.report(call)

    def session(self, stream: ChunkStream, receive: Receive, call: PredictCall) -> StreamSession:
        """A `StreamSession` with this server's heartbeat and graceful timeout."""
        return StreamSession(
            stream,
            receive,
            call,
            self.pipeline,
            heartbeat_s=self.heartbeat_s,
            graceful_timeout_s=self.graceful_timeout_s,
        )


async def send_error(
    send: Send, pipeline: PredictPipeline, call: PredictCall, exc: Exception, sse: bool
) -> None:
    """A failure after the answer began: one error event (SSE) or line (NDJSON), the one
    error body of the pipeline's `fail`, whose code the access record keeps."""
    status = call.status
    media = call.media
    pipeline.fail(call, exc)
    body = call.payload
    # The answer's status line was 200: the record keeps that, with the error's code.
    call.status, call.media = status, media
    event = sse_event(body, b"error") if sse else body + b"\n"
    with contextlib.suppress(Exception):
        await send({"type": "http.response.body", "body": event, "more_body": True})


def finish(call: PredictCall, session: StreamSession) -> None:
    """What the access record and prediction log keep of a streamed answer: its chunk count
    (the chunks themselves went to the client), and whether the client left first."""
    if call.status == 200:
        call.payload = b'{"stream":{"chunks":%d}}' % session.chunks
        if session.disconnected and call.error_code is None:
            call.error_code = "client_disconnected"
