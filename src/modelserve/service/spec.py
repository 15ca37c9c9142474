"""`ServiceSpec`: everything the engines need to know about a Service class, checked once."""

from __future__ import annotations

import inspect
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from modelserve.errors import ServiceDefinitionError
from modelserve.schemas.strict import strict_model
from modelserve.service.base import Service
from modelserve.service.batching import BatchingConfig
from modelserve.service.caching import CachePolicy
from modelserve.service.openai import check_openai
from modelserve.types import Isolation

# Lowercase, digits, '.', '_' and '-', starting with a letter or digit: safe in URLs, file
# names and metric labels, and never a path (no '/', no '..' segment on its own).
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
MAX_REPLICAS = 64
MAX_STREAMS = 1024


@dataclass(frozen=True, slots=True)
class ServiceSource:
    """Where a worker process can import the service class from (never pickled code)."""

    kind: typing.Literal["file", "module"]
    location: str  # a file path or a dotted module name
    attr: str


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A validated description of one Service subclass."""

    cls: type[Service[Any, Any]]
    name: str
    version: str
    description: str
    input_type: type[BaseModel]
    output_type: type[BaseModel]
    # Strict twin of input_type used to validate requests (see schemas.strict).
    wire_input_type: type[BaseModel]
    batching: BatchingConfig
    replicas: int
    isolation: Isolation
    device: str | None
    is_async: bool
    source: ServiceSource | None
    # Files of a registry version, handed to the instance as `self.artifacts` before setup.
    artifact_dir: Path | None = None
    # Re-run a failed batch in parts to isolate the failing items (Service.isolate_failures).
    isolate_failures: bool = True
    # `predict_stream` is defined (and whether it is an async generator function).
    streams: bool = False
    stream_is_async: bool = False
    # Service.openai and Service.max_streams (per replica).
    openai: str | None = None
    max_streams: int = 4
    # Reuse answers for repeated inputs (Service.cache); None: never cached.
    cache: CachePolicy | None = None

    @classmethod
    def from_class(
        cls, service_cls: type[Service[Any, Any]], *, source: ServiceSource | None = None
    ) -> ServiceSpec:
        """Check a Service subclass and describe it; raise ServiceDefinitionError naming the fix."""
        label = service_cls.__qualname__
        if not (isinstance(service_cls, type) and issubclass(service_cls, Service)):
            raise ServiceDefinitionError(f"{label!r} is not a subclass of modelserve.Service")
        name = getattr(service_cls, "name", None)
        if not isinstance(name, str) or not NAME_PATTERN.match(name) or ".." in name:
            raise ServiceDefinitionError(
                f"{label}.name must match {NAME_PATTERN.pattern} (got {name!r})"
            )
        version = str(service_cls.version)
        if not VERSION_PATTERN.match(version):
            raise ServiceDefinitionError(
                f"{label}.version must match {VERSION_PATTERN.pattern} (got {version!r})"
            )
        input_type, output_type = _io_types(service_cls)
        batching = service_cls.batching
        if not isinstance(batching, BatchingConfig):
            raise ServiceDefinitionError(f"{label}.batching must be built with batching(...)")
        replicas = service_cls.replicas
        if not isinstance(replicas, int) or not 1 <= replicas <= MAX_REPLICAS:
            raise ServiceDefinitionError(f"{label}.replicas must be an int in 1..{MAX_REPLICAS}")
        if service_cls.isolation not in ("thread", "process", "inline"):
            raise ServiceDefinitionError(
                f"{label}.isolation must be 'thread', 'process' or 'inline'"
            )
        if service_cls.isolation == "inline" and replicas != 1:
            raise ServiceDefinitionError(
                f"{label} uses isolation='inline' (predict runs on the event loop), so more"
                " replicas cannot run at once: set replicas = 1 or use 'thread'"
            )
        isolate_failures = service_cls.isolate_failures
        if not isinstance(isolate_failures, bool):
            raise ServiceDefinitionError(
                f"{label}.isolate_failures must be True or False (got {isolate_failures!r})"
            )
        cache = service_cls.cache
        if cache is not None and not isinstance(cache, CachePolicy):
            raise ServiceDefinitionError(f"{label}.cache must be built with cache_policy(...)")
        if service_cls.predict is Service.predict:
            raise ServiceDefinitionError(f"{label} must implement predict(self, batch)")
        streams = service_cls.predict_stream is not Service.predict_stream
        if streams and service_cls.isolation == "process":
            raise ServiceDefinitionError(
                f"{label} defines predict_stream, which runs in the server's process: use"
                " isolation='thread' (or 'inline') for a streaming model"
            )
        max_streams = service_cls.max_streams
        if not isinstance(max_streams, int) or not 1 <= max_streams <= MAX_STREAMS:
            raise ServiceDefinitionError(f"{label}.max_streams must be an int in 1..{MAX_STREAMS}")
        check_openai(label, service_cls.openai, input_type, output_type, streams)
        if service_cls.isolation == "process" and source is None:
            raise ServiceDefinitionError(
                f"{label} uses isolation='process' but was not loaded from a file or module,"
                " so a worker process cannot import it"
            )
        return cls(
            cls=service_cls,
            name=name,
            version=version,
            description=service_cls.description
            or inspect.cleandoc(service_cls.__dict__.get("__doc__") or ""),
            input_type=input_type,
            output_type=output_type,
            wire_input_type=strict_model(input_type),
            batching=batching,
            replicas=replicas,
            isolation=service_cls.isolation,
            device=service_cls.device,
            is_async=inspect.iscoroutinefunction(service_cls.predict),
            source=source,
            isolate_failures=isolate_failures,
            cache=cache,
            streams=streams,
            stream_is_async=inspect.isasyncgenfunction(service_cls.predict_stream),
            openai=service_cls.openai,
            max_streams=max_streams,
        )

    def input_schema(self) -> dict[str, Any]:
        """JSON schema of one input, as validated on the wire."""
        return TypeAdapter(self.wire_input_type).json_schema()

    def output_schema(self) -> dict[str, Any]:
        """JSON schema of one output."""
        return TypeAdapter(self.output_type).json_schema(mode="serialization")


def _io_types(service_cls: type[Service[Any, Any]]) -> tuple[type[BaseModel], type[BaseModel]]:
    for klass in service_cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            if typing.get_origin(base) is Service:
                args = typing.get_args(base)
                if len(args) == 2 and all(
                    isinstance(a, type) and issubclass(a, BaseModel) for a in args
                ):
                    return args[0], args[1]
                raise ServiceDefinitionError(
                    f"{service_cls.__qualname__}: Service[In, Out] needs two pydantic BaseModel"
                    f" classes (got {args!r})"
                )
    raise ServiceDefinitionError(
        f"{service_cls.__qualname__} must subclass Service[Input, Output] with pydantic models"
    )
