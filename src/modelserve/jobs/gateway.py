"""How jobs reach served models: the same versions, validation and batching engine as HTTP.

`ModelGateway` answers three questions: which loaded version a job names (resolved once, at
submit), which (model, version) pairs this process can run now (the runner leases only those),
and a `ModelHandle` to run rows through. `RuntimeGateway` is the real one, over the process's
`ModelRuntime`; the HTTP layer hands it the request codec's parser and its error table, so a
row is refused exactly as the same body sent to `/predict` would be, with the same code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from modelserve.errors import ServiceNotFoundError
from modelserve.runtime.manager import DeployedService, ModelRuntime
from modelserve.types import ServiceStatus

# bytes of one JSON input -> the validated input (raises InvalidInputError like a 422).
Parse = Callable[[bytes], Any]
# An output -> its JSON bytes, as a predict response body would hold it.
Dump = Callable[[Any], bytes]


class ItemSink(Protocol):
    """Where rows go to be predicted: a model version's batching engine."""

    @property
    def queue_depth(self) -> int:
        """Items waiting for a batch."""
        ...

    def enqueue(self, item: Any, trace: object | None = None) -> asyncio.Future[Any]:
        """Queue one item; the future holds its output or its error."""
        ...


@dataclass(frozen=True, slots=True)
class ModelHandle:
    """One loaded version, ready to take rows."""

    name: str
    version: str
    parse: Parse
    dump: Dump
    sink: ItemSink
    max_batch_size: int
    # Items the version answered so far, requests and job rows (pacing: `sharing.py`).
    items_seen: Callable[[], int] | None = None


class ModelGateway(Protocol):
    """Served models as jobs see them."""

    def resolve_version(self, model: str, version: str | None) -> str:
        """The loaded version a job on `model` runs on (ServiceNotFoundError if none)."""
        ...

    def servable(self) -> set[tuple[str, str]]:
        """(model, version) pairs ready in this process now."""
        ...

    def handle(self, model: str, version: str) -> ModelHandle:
        """A ready version (ServiceUnavailableError while it loads, ServiceNotFoundError if
        it is not loaded here)."""
        ...

    def schemas(self, model: str, version: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The version's input and output JSON schemas."""
        ...

    def error_code(self, exc: BaseException) -> str:
        """The error code HTTP would answer `exc` with (`invalid_input`, `item_rejected`...)."""
        ...


class RuntimeGateway:
    """`ModelGateway` over a `ModelRuntime`, with the HTTP layer's codec and error table."""

    def __init__(
        self,
        runtime: ModelRuntime,
        *,
        codec: Callable[[DeployedService], tuple[Parse, Dump]],
        error_code: Callable[[BaseException], str],
        serve_alias: str = "production",
    ) -> None:
        self._runtime = runtime
        self._codec = codec
        self._error_code = error_code
        self._serve_alias = serve_alias

    def resolve_version(self, model: str, version: str | None) -> str:
        if version is None or version == self._serve_alias:
            return self._runtime.get(model).spec.version
        if version not in self._runtime.versions(model):
            self._runtime.model(model)  # ServiceNotFoundError for an unknown model first
            raise ServiceNotFoundError(f"model {model!r} has no loaded version {version!r}")
        return version

    def servable(self) -> set[tuple[str, str]]:
        return {
            (deployed.spec.name, deployed.spec.version)
            for deployed in self._runtime
            if deployed.status is ServiceStatus.READY and deployed.engine is not None
        }

    def handle(self, model: str, version: str) -> ModelHandle:
        deployed = self._runtime.versions(model).get(version)
        if deployed is None:
            raise ServiceNotFoundError(f"model {model!r} has no loaded version {version!r}")
        engine = deployed.require_ready()
        parse, dump = self._codec(deployed)
        spec = deployed.spec
        return ModelHandle(
            name=spec.name,
            version=spec.version,
            parse=parse,
            dump=dump,
            sink=engine,
            max_batch_size=spec.batching.max_batch_size,
            items_seen=lambda: deployed.counters.items,
        )

    def schemas(self, model: str, version: str) -> tuple[dict[str, Any], dict[str, Any]]:
        deployed = self._runtime.versions(model).get(version)
        if deployed is None:
            raise ServiceNotFoundError(f"model {model!r} has no loaded version {version!r}")
        return deployed.spec.input_schema(), deployed.spec.output_schema()

    def error_code(self, exc: BaseException) -> str:
        return self._error_code(exc)
