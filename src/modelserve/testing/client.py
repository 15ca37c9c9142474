"""`ServiceClient`: a Service driven through the server's own predict pipeline, in-process.

No socket, no database, no authentication: the client loads the service once (its `setup`
runs as the server runs it, on its replica), then each call opens a `PredictCall` on the same
`PredictPipeline` the HTTP adapters use. Statuses, error bodies and headers are therefore the
server's (less what uvicorn adds: `date`, `server`).

    with ServiceClient(MyIris) as client:
        assert client.predict({"sepal_length": 5.1, ...}).json()["species"] == "setosa"
        assert client.predict({"sepal_length": -1, ...}).status == 422

A Service with `predict_stream` is driven the same way: `client.stream(item)` runs the
pipeline's streamed steps and collects the chunks as a client would decode them.

    reply = client.stream({"prompt": "The Fox", "max_tokens": 5})
    assert reply.ok and len(reply.chunks) == 5

The event loop runs on a thread of the client's own, so the client works the same from plain
and from async tests.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel

from modelserve.cache import PredictionCache
from modelserve.config import Settings
from modelserve.errors import OutputMismatchError, ServiceUnavailableError
from modelserve.http.codec import CodecCache
from modelserve.http.context import RequestLimits
from modelserve.http.pipeline import PredictPipeline
from modelserve.http.streaming import SSE_MEDIA, encode_chunk
from modelserve.runtime.manager import ModelRuntime
from modelserve.runtime.streaming import END
from modelserve.service.base import Service
from modelserve.service.spec import ServiceSpec
from modelserve.types import RequestRecord, ServiceStatus

T = TypeVar("T")

# How long setup may take before the client gives up (a large model on a slow disk).
DEFAULT_SETUP_TIMEOUT_S = 600.0
JSON = "application/json"
OCTETS = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class PredictResponse:
    """What the server would have answered: status, headers (lowercase names) and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        """True for a 200."""
        return self.status == 200

    def json(self) -> Any:
        """The body as JSON values."""
        return orjson.loads(self.body)

    @property
    def error_code(self) -> str | None:
        """The `error.code` of an error body, else None."""
        if self.status == 200:
            return None
        error = self.json().get("error")
        return error.get("code") if isinstance(error, dict) else None


@dataclass(frozen=True, slots=True)
class StreamResponse:
    """A streamed answer, collected: the status and headers it began with, every chunk (as
    JSON values, as a client decodes them) and, when it ended with an error event (the model
    failed after its first chunk), that error's body."""

    status: int
    headers: Mapping[str, str]
    chunks: list[Any]
    error: Any = None

    @property
    def ok(self) -> bool:
        """True for a stream that began (200) and ended without an error event."""
        return self.status == 200 and self.error is None

    @property
    def error_code(self) -> str | None:
        """The `error.code` of an error answer or error event, else None."""
        error = self.error.get("error") if isinstance(self.error, dict) else None
        return error.get("code") if isinstance(error, dict) else None


class ServiceClient:
    """Runs `setup` once and serves predictions through the real pipeline, in-process.

    `service` is a Service subclass or a ServiceSpec; `settings` gives the HTTP limits (body
    size, inputs per batch) and the device, as the server reads them. Use as a context manager
    (or call `start` and `close`). `records` holds the access record of every call.
    """

    def __init__(
        self,
        service: type[Service[Any, Any]] | ServiceSpec,
        *,
        settings: Settings | None = None,
        setup_timeout_s: float = DEFAULT_SETUP_TIMEOUT_S,
    ) -> None:
        self.spec = service if isinstance(service, ServiceSpec) else ServiceSpec.from_class(service)
        self.settings = settings or Settings()
        self.records: list[RequestRecord] = []
        self.setup_s: float | None = None
        self._setup_timeout_s = setup_timeout_s
        self._runtime = ModelRuntime([self.spec], device=self.settings.device)
        http = self.settings.http
        self.pipeline = PredictPipeline(
            self._runtime.table,
            CodecCache(max_batch_inputs=http.max_batch_inputs),
            limits=RequestLimits(max_body_bytes=http.max_body_bytes, max_headers=http.max_headers),
            observers=[self],
            cache=PredictionCache(self.settings.cache),
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ServiceClient:
        """Start the loop thread and load the service; raise ServiceUnavailableError with
        the reason when its setup fails."""
        if self._loop is not None:
            return self
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name=f"modelserve-testing-{self.spec.name}", daemon=True
        )
        self._thread.start()
        started = time.perf_counter()
        self._run(self._load(), self._setup_timeout_s)
        self.setup_s = time.perf_counter() - started
        deployed = self._runtime.get(self.spec.name)
        if deployed.status is not ServiceStatus.READY:
            detail = deployed.detail or deployed.reason or deployed.status.value
            self.close()
            raise ServiceUnavailableError(f"model {self.spec.name!r} did not load: {detail}")
        return self

    def close(self) -> None:
        """Stop the replicas and the loop thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._run(self._runtime.stop(drain_timeout_s=5.0), 30.0)
            self._run(self.pipeline.cache.close(), 30.0)  # Redis connections, when configured
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30.0)
            loop.close()
            self._loop = self._thread = None

    def __enter__(self) -> ServiceClient:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- predictions -----------------------------------------------------------------------

    def predict(
        self, item: BaseModel | Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> PredictResponse:
        """`POST .../predict` with one input (a model instance or its JSON-able dict)."""
        return self.post(_dumps(item), headers=headers)

    def predict_batch(
        self,
        items: Iterable[BaseModel | Mapping[str, Any]],
        *,
        headers: Mapping[str, str] | None = None,
    ) -> PredictResponse:
        """`POST .../predict/batch` with `{"inputs": [...]}`."""
        inputs = b",".join(_dumps(item) for item in items)
        return self.post(b'{"inputs":[' + inputs + b"]}", batch=True, headers=headers)

    def predict_raw(
        self, data: bytes, *, headers: Mapping[str, str] | None = None
    ) -> PredictResponse:
        """`POST .../predict` with a raw `application/octet-stream` body (a model whose input
        is one bytes field: an image, an audio clip)."""
        return self.post(data, content_type=OCTETS, headers=headers)

    def post(
        self,
        body: bytes,
        *,
        batch: bool = False,
        content_type: str | None = JSON,
        headers: Mapping[str, str] | None = None,
        version: str | None = None,
    ) -> PredictResponse:
        """Any body, as the predict route (`batch`: the batch route; `version`: the pinned
        route) would take it. `content_type=None` sends none, OCTETS a raw body."""
        pairs = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
        ]
        if content_type is not None and not any(k == b"content-type" for k, _ in pairs):
            pairs.append((b"content-type", content_type.encode("latin-1")))
        return self._run(self._serve(body, pairs, batch, version), self._timeout_s)

    def stream(
        self,
        item: BaseModel | Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        version: str | None = None,
        max_chunks: int | None = None,
    ) -> StreamResponse:
        """`POST .../predict?stream=true` with one input: `predict_stream`'s chunks through the
        pipeline's streamed steps. An error before the first chunk (422, 400
        `stream_not_supported`, 503 past the stream cap) is the status with the error body in
        `error`; `max_chunks` stops reading there, as a client that goes away would."""
        pairs = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
        ]
        if not any(k == b"content-type" for k, _ in pairs):
            pairs.append((b"content-type", JSON.encode("latin-1")))
        coro = self._stream(_dumps(item), pairs, version, max_chunks)
        return self._run(coro, self._timeout_s)

    def output(self, item: BaseModel | Mapping[str, Any]) -> BaseModel:
        """The output model of one input; AssertionError with the error body otherwise."""
        response = self.predict(item)
        assert response.ok, f"predict answered {response.status}: {response.body.decode()}"
        return self.spec.output_type.model_validate_json(response.body)

    def on_request(self, record: RequestRecord) -> None:
        """The pipeline's observer: keeps each call's access record in `records`."""
        self.records.append(record)

    # -- internals -------------------------------------------------------------------------

    @property
    def _timeout_s(self) -> float:
        # A call never waits past the model's own deadline, plus room for the loop.
        return self.spec.batching.timeout_s + 30.0

    async def _load(self) -> None:
        self._runtime.start()
        await self._runtime.wait_loaded()

    async def _serve(
        self, body: bytes, headers: list[tuple[bytes, bytes]], batch: bool, version: str | None
    ) -> PredictResponse:
        pipeline = self.pipeline
        call = pipeline.open(self.spec.name, version, batch, headers)

        async def read() -> bytes:
            return body

        await pipeline.run(call, read)
        head = pipeline.head(call)
        pipeline.report(call)
        return PredictResponse(
            call.status, {k.decode("latin-1"): v.decode("latin-1") for k, v in head}, call.payload
        )

    async def _stream(
        self,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        version: str | None,
        max_chunks: int | None,
    ) -> StreamResponse:
        pipeline = self.pipeline
        call = pipeline.open(self.spec.name, version, False, headers, b"stream=true")

        async def read() -> bytes:
            return body

        stream = await pipeline.run_stream(call, read)
        if stream is None:  # settled as an error before any chunk
            head = _text_headers(pipeline.head(call))
            pipeline.report(call)
            return StreamResponse(call.status, head, [], orjson.loads(call.payload))
        call.media = SSE_MEDIA
        head = _text_headers(pipeline.head(call, streamed=True))
        chunks: list[Any] = []
        error: Any = None
        try:
            while max_chunks is None or len(chunks) < max_chunks:
                chunk = await stream.next()
                if chunk is END:
                    break
                try:
                    data = encode_chunk(chunk)
                except Exception:  # as the HTTP adapter words it
                    raise OutputMismatchError(
                        "predict_stream yielded a chunk that is not JSON"
                    ) from None
                chunks.append(orjson.loads(data))  # as a client reads it
        except Exception as exc:  # the model failed after it began: the error event
            status = call.status
            pipeline.fail(call, exc)
            error = orjson.loads(call.payload)
            call.status = status
        finally:
            stream.cancel()
            if call.status == 200 and error is None:
                call.payload = b'{"stream":{"chunks":%d}}' % len(chunks)
            pipeline.report(call)
        return StreamResponse(200, head, chunks, error)

    def _run(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        loop = self._loop
        if loop is None:
            coro.close()
            raise RuntimeError("the client is not started: use it as a context manager")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout_s)


def _text_headers(head: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in head}


def _dumps(item: BaseModel | Mapping[str, Any]) -> bytes:
    if isinstance(item, BaseModel):
        return item.model_dump_json().encode()
    return orjson.dumps(item)
