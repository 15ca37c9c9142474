"""The OpenAI-compatible routes: OpenAI's clients against modelserve's models.

With `base_url="http://host:8000/openai/v1"` an OpenAI client works unmodified:

- `POST /openai/v1/embeddings`: a model marked `openai = "embeddings"`;
- `POST /openai/v1/chat/completions` and `/openai/v1/completions`: a model marked
  `openai = "completions"`, whose `predict_stream` yields text; `stream: true` answers OpenAI's
  SSE chunks ending with `data: [DONE]`, `stream: false` the assembled answer;
- `GET /openai/v1/models[/{model}]`: the models the key may call, in OpenAI's list shape
  (modelserve's own `GET /v1/models` keeps its shape for modelserve clients).

The three POST routes also answer at `/v1/...` (no clash with modelserve's `/v1/models`), for
clients configured with modelserve's base URL. A modelserve API key is the OpenAI bearer key.

Each POST runs the predict pipeline with an OpenAI `WireFormat` (http/openai_wire.py): the
same authentication, limits, traffic policy, engine or stream cap, access record. One
difference of order: OpenAI names the model in the body, so the body is read (under the size
cap) before the credential is checked against `predict:<model>`; a caller without a valid
credential still learns nothing but 401.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from modelserve.auth.guard import refuse_query_credentials
from modelserve.errors import ModelserveError, OutputMismatchError, ResourceNotFoundError
from modelserve.http.context import REQUEST_ID_HEADER, REQUEST_ID_KEY, notify_observers, read_body
from modelserve.http.context import request_id_from as new_request_id
from modelserve.http.errors import render_error, status_and_code
from modelserve.http.openai_wire import (
    ChatRequest,
    CompletionRequest,
    EmbeddingsRequest,
    EmbeddingsWire,
    GenerationWire,
    StopScanner,
    completion_id,
    count_words,
    model_name,
    now,
    openai_error,
    read_request,
)
from modelserve.http.pipeline import PredictCall, PredictPipeline
from modelserve.http.predict import answer_settled
from modelserve.http.streaming import (
    HEARTBEAT,
    SSE_MEDIA,
    StreamEndpoint,
    StreamSession,
    finish,
    send_error,
    sse_event,
)
from modelserve.runtime.streaming import END, IDLE
from modelserve.types import PredictGuard, Receive, RequestRecord, Scope, Send

logger = logging.getLogger("modelserve.http")

PREFIX = "/openai/v1"
# Path -> route kind; also the route templates observers see (the paths themselves).
POST_ROUTES = {
    f"{PREFIX}/embeddings": "embeddings",
    f"{PREFIX}/chat/completions": "chat",
    f"{PREFIX}/completions": "text",
    "/v1/embeddings": "embeddings",
    "/v1/chat/completions": "chat",
    "/v1/completions": "text",
}
MODELS_PATH = f"{PREFIX}/models"
MODEL_ROUTE = f"{PREFIX}/models/{{model}}"
DONE = b"data: [DONE]\n\n"


def match_openai(method: str, path: str) -> str | None:
    """The OpenAI route a request is for ("embeddings", "chat", "text", "models"), or None."""
    if method == "POST":
        return POST_ROUTES.get(path)
    if method == "GET" and path.startswith(MODELS_PATH):
        rest = path[len(MODELS_PATH) :]
        if rest == "" or (rest.startswith("/") and "/" not in rest[1:]):
            return "models"
    return None


class Generation:
    """The text of one completion as it streams: stop strings, `max_tokens`, the reason it
    ended, the tokens it took (one chunk of `predict_stream` is one token)."""

    def __init__(self, session: StreamSession, stops: list[str], limit: int | None) -> None:
        self.session = session
        self.scanner = StopScanner(stops)
        self.limit = limit
        self.tokens = 0
        self.finish_reason: str | None = None

    async def next(self) -> Any:
        """The next piece of text, `IDLE`, or `END`; raises what the stream raises."""
        if self.finish_reason is not None:
            return END
        while True:
            chunk = await self.session.next()
            if chunk is IDLE:
                return IDLE
            if chunk is END:
                self.finish_reason = "length" if self._at_limit() else "stop"
                return self.scanner.flush() or END
            self.tokens += 1
            out = self.scanner.feed(_text_of(chunk))
            if self.scanner.stopped:
                self.finish_reason = "stop"
            elif self._at_limit():
                self.finish_reason = "length"
                out += self.scanner.flush()
            if self.finish_reason is not None:
                self.session.stream.cancel()  # the model stops at its next yield
                return out or END
            if out:
                return out

    def _at_limit(self) -> bool:
        return self.limit is not None and self.tokens >= self.limit


def _text_of(chunk: Any) -> str:
    if isinstance(chunk, str):
        return chunk
    text = chunk.get("text") if isinstance(chunk, dict) else getattr(chunk, "text", None)
    if isinstance(text, str):
        return text
    raise OutputMismatchError("predict_stream of a completions model must yield text")


class OpenAIEndpoint:
    """The OpenAI-compatible routes over the predict pipeline (see the module)."""

    def __init__(
        self, pipeline: PredictPipeline, streams: StreamEndpoint, guard: PredictGuard | None
    ) -> None:
        self.pipeline = pipeline
        self.streams = streams
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send, kind: str) -> None:
        """Serve one request for the route `match_openai` named."""
        if kind == "models":
            await self.models(scope, send)
            return
        pipeline = self.pipeline
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        body = b""
        failure: Exception | None = None
        try:
            body = await read_body(receive, headers, pipeline.limits.max_body_bytes)
        except Exception as exc:  # answered after authentication, as the pipeline orders it
            failure = exc

        async def read() -> bytes:
            if failure is not None:
                raise failure
            return body

        request_type: Any = {
            "embeddings": EmbeddingsRequest,
            "chat": ChatRequest,
            "text": CompletionRequest,
        }[kind]
        request, problem = read_request(request_type, body) if failure is None else (None, None)
        wire = (EmbeddingsWire if kind == "embeddings" else GenerationWire)(request, problem)
        call = pipeline.open(
            model_name(body),
            None,
            True,
            headers,
            scope["query_string"],
            wire=wire,
            route=scope["path"],
        )
        scope[REQUEST_ID_KEY] = call.request_id
        if kind == "embeddings":
            await pipeline.run(call, read)
            await answer_settled(send, pipeline, call)
            return
        stream = await pipeline.run_stream(call, read)
        if stream is None:
            await answer_settled(send, pipeline, call)
            return
        assert isinstance(request, ChatRequest | CompletionRequest)
        session = self.streams.session(stream, receive, call)
        assert isinstance(wire, GenerationWire)
        generation = Generation(session, request.stops, wire.limit)
        chat = kind == "chat"
        try:
            prompt_tokens = self._count(call, request.prompt_text)
            if request.stream:
                await self._stream(send, call, generation, request, chat, prompt_tokens)
            else:
                await self._assemble(send, call, generation, chat, prompt_tokens)
        finally:
            session.close()
            finish(call, session)
            pipeline.report(call)

    async def _assemble(
        self, send: Send, call: PredictCall, generation: Generation, chat: bool, prompt: int
    ) -> None:
        """`stream: false`: every piece, then one JSON answer (or the error, with its status)."""
        pipeline = self.pipeline
        parts: list[str] = []
        try:
            while (piece := await generation.next()) is not END:
                if piece is not IDLE:
                    parts.append(piece)
        except Exception as exc:
            pipeline.fail(call, exc)
        else:
            text = "".join(parts)
            choice: dict[str, Any] = {"index": 0, "logprobs": None}
            if chat:
                choice["message"] = {"role": "assistant", "content": text, "refusal": None}
            else:
                choice["text"] = text
            choice["finish_reason"] = generation.finish_reason
            call.payload = orjson.dumps(
                {
                    "id": completion_id(chat),
                    "object": "chat.completion" if chat else "text_completion",
                    "created": now(),
                    "model": call.name,
                    "system_fingerprint": None,
                    "choices": [choice],
                    "usage": _usage(prompt, generation.tokens),
                }
            )
        await send(
            {"type": "http.response.start", "status": call.status, "headers": pipeline.head(call)}
        )
        await send({"type": "http.response.body", "body": call.payload})

    async def _stream(
        self,
        send: Send,
        call: PredictCall,
        generation: Generation,
        request: ChatRequest | CompletionRequest,
        chat: bool,
        prompt: int,
    ) -> None:
        """`stream: true`: OpenAI's chunks as server-sent events, then `data: [DONE]`."""
        pipeline = self.pipeline
        try:
            piece = await generation.next()  # an error before the first piece has a status
        except Exception as exc:
            pipeline.fail(call, exc)
            await send(
                {
                    "type": "http.response.start",
                    "status": call.status,
                    "headers": pipeline.head(call),
                }
            )
            await send({"type": "http.response.body", "body": call.payload})
            return
        call.media = SSE_MEDIA
        usage = request.include_usage
        shape = _ChunkShape(call.name, chat, usage)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": pipeline.head(call, streamed=True),
            }
        )
        if chat:
            await _event(send, shape.chunk({"role": "assistant", "content": ""}, None))
        while piece is not END:
            if piece is IDLE:
                await send({"type": "http.response.body", "body": HEARTBEAT, "more_body": True})
            else:
                delta = {"content": piece} if chat else piece
                await _event(send, shape.chunk(delta, None))
            try:
                piece = await generation.next()
            except Exception as exc:
                await send_error(send, pipeline, call, exc, True)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
        if generation.session.disconnected:
            return
        await _event(send, shape.chunk({} if chat else "", generation.finish_reason))
        if usage:
            await _event(send, shape.usage(_usage(prompt, generation.tokens)))
        await send({"type": "http.response.body", "body": DONE, "more_body": False})

    def _count(self, call: PredictCall, text: str) -> int:
        """Prompt tokens: the model's own `count_tokens(text)` when it has one, else words."""
        deployed = call.deployed
        if deployed is not None:
            for replica in deployed.replicas:
                counter = getattr(getattr(replica, "service", None), "count_tokens", None)
                if counter is not None:
                    try:
                        return int(counter(text))
                    except Exception:  # the model's code: its usage figure is not worth a 500
                        logger.exception("count_tokens of %r failed; counting words", call.name)
                    break
        return count_words(text)

    async def models(self, scope: Scope, send: Send) -> None:
        """`GET /openai/v1/models[/{model}]`: the models this credential may call."""
        started = time.perf_counter()
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        request_id = new_request_id(headers)
        path: str = scope["path"]
        wanted = path[len(MODELS_PATH) + 1 :] or None
        route = MODEL_ROUTE if wanted is not None else MODELS_PATH
        principal = None
        error_code = None
        try:
            self.pipeline.limits.check_headers(headers)
            if self.guard is not None:
                refuse_query_credentials(scope["query_string"])
                principal = await self.guard.authenticate(headers)
            listed = []
            for model in self.pipeline.table.models():
                if principal is not None and not principal.has_scope("predict:" + model.name):
                    continue
                primary = model.primary
                if primary is None:
                    continue
                listed.append(
                    {
                        "id": model.name,
                        "object": "model",
                        "created": int(primary.loaded_at or 0),
                        "owned_by": "modelserve",
                    }
                )
            if wanted is not None:
                found = [m for m in listed if m["id"] == wanted]
                if not found:
                    raise ResourceNotFoundError(
                        f"model {wanted[:64]!r} not found", details={"param": "model"}
                    )
                payload = orjson.dumps(found[0])
            else:
                payload = orjson.dumps({"object": "list", "data": listed})
            status, extra = 200, list[tuple[bytes, bytes]]()
        except Exception as exc:
            status, extra, payload = render_error(exc, request_id, openai_error)
            error_code = status_and_code(exc)[1] if isinstance(exc, ModelserveError) else None
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (REQUEST_ID_HEADER, request_id.encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        notify_observers(
            self.pipeline.observers,
            RequestRecord(
                "GET",
                route,
                status,
                time.perf_counter() - started,
                request_id,
                principal,
                error_code=error_code,
            ),
        )


class _ChunkShape:
    """OpenAI's streamed chunk objects of one completion (one id, one `created`)."""

    def __init__(self, model: str, chat: bool, usage: bool) -> None:
        self.id = completion_id(chat)
        self.created = now()
        self.model = model
        self.chat = chat
        self.with_usage = usage

    def chunk(self, delta: Any, finish_reason: str | None) -> bytes:
        """One chunk: a chat `delta` or a completion's `text`."""
        choice: dict[str, Any] = {"index": 0}
        if self.chat:
            choice["delta"] = delta
        else:
            choice["text"] = delta
        choice["logprobs"] = None
        choice["finish_reason"] = finish_reason
        return self._dump([choice], None)

    def usage(self, usage: dict[str, int]) -> bytes:
        """The last chunk of `stream_options.include_usage`: no choices, the usage."""
        return self._dump([], usage)

    def _dump(self, choices: list[Any], usage: dict[str, int] | None) -> bytes:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self.with_usage:
            body["usage"] = usage  # null on every chunk but the last, as OpenAI sends it
        return orjson.dumps(body)


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def _event(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": sse_event(data), "more_body": True})
