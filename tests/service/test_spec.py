from __future__ import annotations

import types
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from modelserve import BatchingConfig, Service, ServiceDefinitionError, ServiceSpec, batching


class In(BaseModel):
    x: float


class Out(BaseModel):
    y: float


def make(**attrs: Any) -> type[Service[In, Out]]:
    def predict(self: Any, batch: list[In]) -> list[Out]:
        return [Out(y=i.x) for i in batch]

    namespace: dict[str, Any] = {"name": "m", "predict": predict, **attrs}
    cls: type[Service[In, Out]] = types.new_class(
        "M", (Service[In, Out],), exec_body=lambda ns: ns.update(namespace)
    )
    return cls


def test_spec_reads_types_and_policy() -> None:
    spec = ServiceSpec.from_class(make(batching=batching(8, 2), replicas=2, version="2.1"))
    assert spec.input_type is In and spec.output_type is Out
    assert spec.batching == BatchingConfig(max_batch_size=8, max_wait_ms=2)
    assert spec.replicas == 2 and spec.version == "2.1"
    assert spec.input_schema()["additionalProperties"] is False
    assert not spec.is_async


@pytest.mark.parametrize(
    "name", ["", "UPPER", "../etc", "a/b", "..", " x", "x" * 70, "a..b", "naïve", None]
)
def test_bad_names_are_refused(name: object) -> None:
    with pytest.raises(ServiceDefinitionError, match="name"):
        ServiceSpec.from_class(make(name=name))


def test_missing_type_parameters_are_refused() -> None:
    class Untyped(Service):  # type: ignore[type-arg]
        name = "u"

        def predict(self, batch: list[Any]) -> list[Any]:
            return batch

    with pytest.raises(ServiceDefinitionError, match=r"Service\[Input, Output\]"):
        ServiceSpec.from_class(Untyped)


def test_missing_predict_is_refused() -> None:
    class NoPredict(Service[In, Out]):
        name = "n"

    with pytest.raises(ServiceDefinitionError, match="predict"):
        ServiceSpec.from_class(NoPredict)


def test_inline_isolation_takes_one_replica() -> None:
    assert ServiceSpec.from_class(make(isolation="inline")).isolation == "inline"
    with pytest.raises(ServiceDefinitionError, match="replicas = 1"):
        ServiceSpec.from_class(make(isolation="inline", replicas=2))
    with pytest.raises(ServiceDefinitionError, match="'thread', 'process' or 'inline'"):
        ServiceSpec.from_class(make(isolation="gpu"))


def test_process_isolation_needs_an_importable_source() -> None:
    with pytest.raises(ServiceDefinitionError, match="worker process"):
        ServiceSpec.from_class(make(isolation="process"))


@pytest.mark.parametrize(
    "kwargs",
    [{"max_batch_size": 0}, {"max_wait_ms": -1}, {"max_queue": 0}, {"timeout_s": 0}],
)
def test_bad_batching_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ServiceDefinitionError):
        batching(**kwargs)


def test_async_predict_is_detected() -> None:
    class Async(Service[In, Out]):
        name = "a"
        labels: ClassVar[list[str]] = []

        async def predict(self, batch: list[In]) -> list[Out]:  # type: ignore[override]
            return [Out(y=i.x) for i in batch]

    assert ServiceSpec.from_class(Async).is_async
