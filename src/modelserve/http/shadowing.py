"""Shadow traffic: a sampled share of a model's unpinned requests is copied to its shadow version.

The copy runs after the answer is encoded, as a background task, and never touches the answer:
the shadow version parses the same body with its own codec, runs through its own engine, and
how both versions answered is kept by the runtime (`runtime/shadow.py`: the record, the
comparison and the per-model ring) for `GET /v1/models/{name}/shadow` and the console.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from modelserve.errors import ModelserveError
from modelserve.http.codec import CodecCache
from modelserve.runtime import shadow
from modelserve.runtime.routing import ModelTable
from modelserve.runtime.versions import DeployedService

if TYPE_CHECKING:
    from modelserve.http.pipeline import PredictCall


class ShadowMirror:
    """Copies sampled requests to the shadow version and records both answers."""

    def __init__(self, table: ModelTable, codecs: CodecCache) -> None:
        self._table = table
        self._codecs = codecs
        # Held until done: the loop keeps only weak references to tasks.
        self._background: set[asyncio.Task[None]] = set()

    def offer(self, call: PredictCall, result: Any, mirror: DeployedService) -> None:
        """Copy this answered, unpinned request to `mirror`, the shadow version the model's
        policy sampled it for (`ModelTable.mirror`)."""
        primary = call.deployed
        assert primary is not None  # answered, so admitted
        self._start(
            self._run(
                primary,
                mirror,
                call,
                result if call.is_batch else [result],
                time.perf_counter() - call.started,
            )
        )

    @property
    def running(self) -> int:
        """Copies still in flight."""
        return len(self._background)

    def _start(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run(
        self,
        primary: DeployedService,
        mirror: DeployedService,
        call: PredictCall,
        results: list[Any],
        primary_latency_s: float,
    ) -> None:
        # Never affects the answer already sent: every failure becomes part of the record.
        primary_out = [_plain(r) for r in results]
        started = time.perf_counter()
        try:
            engine = mirror.require_ready()
            codec = self._codecs.get(mirror)
            if call.wire is not None:  # a protocol's body (V2): its mapping, for this version
                shadow_results = await engine.submit_many(call.wire.parse(call, codec))
            elif call.is_batch:
                shadow_results = await engine.submit_many(codec.parse_batch(call.body))
            elif call.raw:
                shadow_results = [await engine.submit(codec.parse_raw(call.body))]
            else:
                shadow_results = [await engine.submit(codec.parse_one(call.body))]
            entry = shadow.record(
                request_id=call.request_id,
                primary_version=primary.spec.version,
                shadow_version=mirror.spec.version,
                primary_output=primary_out,
                primary_latency_s=primary_latency_s,
                shadow_output=[_plain(r) for r in shadow_results],
                shadow_latency_s=time.perf_counter() - started,
            )
        except Exception as exc:
            entry = shadow.record(
                request_id=call.request_id,
                primary_version=primary.spec.version,
                shadow_version=mirror.spec.version,
                primary_output=primary_out,
                primary_latency_s=primary_latency_s,
                error=type(exc).__name__,
            )
        self._table.record_shadow(primary.spec.name, entry)


def _plain(value: Any) -> Any:
    """An output as JSON-like values for the comparison; a per-item error by its class."""
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(mode="json")
    if isinstance(value, ModelserveError):
        return {"error": type(value).__name__}
    return value
