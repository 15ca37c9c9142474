"""A predict pipeline with the cache, a guard that names callers by header, and no server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from modelserve.cache import PredictionCache
from modelserve.http.codec import CodecCache
from modelserve.http.context import RequestLimits
from modelserve.http.pipeline import PredictPipeline
from modelserve.runtime.manager import ModelRuntime
from modelserve.service.spec import ServiceSpec
from modelserve.types import Principal

WHO = b"x-test-caller"


def principal(name: str, *scopes: str) -> Principal:
    return Principal(
        kind="api_key",
        subject=f"key-{name}",
        owner_id=f"user-{name}",
        role="member",
        scopes=frozenset({"predict:*", *scopes}),
        rate_key=f"key-{name}",
    )


# Callers by the value of the WHO header: alice and bob are tenants; ops may bypass the cache.
CALLERS = {
    b"alice": principal("alice"),
    b"bob": principal("bob"),
    b"ops": principal("ops", "registry:write"),
}


class HeaderGuard:
    """A `PredictGuard` taking the caller from a header (no credentials in these tests)."""

    def check_predict_now(self, headers: list[tuple[bytes, bytes]], model: str) -> Principal:
        for key, value in headers:
            if key == WHO:
                return CALLERS[value]
        return CALLERS[b"alice"]

    async def check_predict(self, headers: list[tuple[bytes, bytes]], model: str) -> Principal:
        return self.check_predict_now(headers, model)


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    @property
    def cache(self) -> str | None:
        value = self.headers.get(b"x-cache")
        return None if value is None else value.decode()

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Harness:
    runtime: ModelRuntime
    pipeline: PredictPipeline

    @property
    def cache(self) -> PredictionCache:
        return self.pipeline.cache

    async def predict(
        self,
        name: str,
        body: Any,
        *,
        who: bytes | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
        version: str | None = None,
        raw: bool = False,
        batch: bool = False,
    ) -> Reply:
        pairs = [(b"content-type", b"application/octet-stream" if raw else b"application/json")]
        if who is not None:
            pairs.append((WHO, who))
        pairs.extend(headers)
        payload = body if isinstance(body, bytes) else orjson.dumps(body)
        pipeline = self.pipeline
        call = pipeline.open(name, version, batch, pairs)

        async def read() -> bytes:
            return payload

        await pipeline.run(call, read)
        head = pipeline.head(call)
        pipeline.report(call)
        return Reply(call.status, dict(head), call.payload)


@asynccontextmanager
async def harness(
    *services: type[Any] | ServiceSpec, cache: PredictionCache | None = None
) -> AsyncIterator[Harness]:
    specs = [s if isinstance(s, ServiceSpec) else ServiceSpec.from_class(s) for s in services]
    runtime = ModelRuntime(specs, device="cpu")
    pipeline = PredictPipeline(
        runtime.table,
        CodecCache(max_batch_inputs=64),
        limits=RequestLimits(max_body_bytes=1 << 20, max_headers=100),
        guard=HeaderGuard(),
        cache=cache,
    )
    runtime.start()
    await runtime.wait_loaded()
    try:
        yield Harness(runtime, pipeline)
    finally:
        await pipeline.cache.close()
        await runtime.stop(1.0, 5.0)
