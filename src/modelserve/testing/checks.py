"""Checks a model author runs on a Service: batch invariance, refusals, and the `check` report.

`assert_batch_invariant(service, inputs)`: predicting a batch gives, item for item and in order,
what predicting each item alone gives (outputs, and item errors by code), so that batching,
which mixes clients' requests, can never change an answer. `check_service` runs every check
and measures what `modelserve check` prints: the schemas, a sample prediction, batch
invariance, that invalid inputs are refused without running the model, the setup time and the
latency per item at batch 1 and at `max_batch_size`.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from modelserve.config import Settings
from modelserve.service.base import Service
from modelserve.service.spec import ServiceSpec
from modelserve.testing.client import PredictResponse, ServiceClient
from modelserve.testing.inputs import invalid_inputs, sample_inputs, spec_of

TIMING_ROUNDS = 5
# How far a batched float may be from the same item predicted alone in `check_service`: a
# batched kernel may sum in another order (float32 models differ around 1e-7).
CHECK_REL_TOL = 1e-6
CHECK_ABS_TOL = 1e-9


def assert_batch_invariant(
    service: ServiceClient | type[Service[Any, Any]] | ServiceSpec,
    inputs: Sequence[BaseModel | Mapping[str, Any]],
    *,
    abs_tol: float = 0.0,
    rel_tol: float = 0.0,
) -> None:
    """Assert that predicting `inputs` as one batch equals predicting each alone, in order.

    `service` is a started ServiceClient, or a Service class (or spec) to start one for. Floats
    may differ by `abs_tol`/`rel_tol` (a batched kernel may sum in another order). Raises
    AssertionError naming the first item that differs.
    """
    if isinstance(service, ServiceClient):
        _assert_batch_invariant(service, inputs, abs_tol, rel_tol)
        return
    with ServiceClient(service) as client:
        _assert_batch_invariant(client, inputs, abs_tol, rel_tol)


def _assert_batch_invariant(
    client: ServiceClient,
    inputs: Sequence[BaseModel | Mapping[str, Any]],
    abs_tol: float,
    rel_tol: float,
) -> None:
    assert inputs, "assert_batch_invariant needs at least one input"
    batch = client.predict_batch(inputs)
    assert batch.ok, f"the batch was refused: {batch.status} {batch.body.decode()}"
    answer = batch.json()
    outputs, errors = answer["outputs"], {e["index"]: e for e in answer["errors"]}
    assert len(outputs) == len(inputs), f"{len(inputs)} inputs, {len(outputs)} outputs"
    for index, item in enumerate(inputs):
        alone = client.predict(item)
        if index in errors:
            rejected = not alone.ok and alone.error_code == errors[index]["code"]
            assert rejected, (
                f"item {index}: rejected in the batch ({errors[index]['code']}) but alone"
                f" answered {alone.status} {alone.body.decode()}"
            )
            continue
        assert alone.ok, (
            f"item {index}: answered in the batch but alone {alone.status} {alone.body.decode()}"
        )
        assert _close(outputs[index], alone.json(), abs_tol, rel_tol), (
            f"item {index}: in the batch {outputs[index]!r}, alone {alone.json()!r}"
        )


def _close(a: Any, b: Any, abs_tol: float, rel_tol: float) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, int | float) and isinstance(b, int | float):
            return math.isclose(a, b, abs_tol=abs_tol, rel_tol=rel_tol)
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], abs_tol, rel_tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(
            _close(x, y, abs_tol, rel_tol) for x, y in zip(a, b, strict=True)
        )
    return bool(a == b)


def assert_refuses_invalid_inputs(client: ServiceClient) -> None:
    """Assert that every input `invalid_inputs` makes is refused with a 4xx and the error
    body, and that none of them reached the model."""
    for case in invalid_inputs(client.spec):
        seen = len(client.records)
        response = client.post(case.body)
        assert response.status in case.statuses, (
            f"{case.label}: answered {response.status}, expected one of {case.statuses}:"
            f" {response.body.decode()}"
        )
        assert response.error_code is not None, f"{case.label}: no error body"
        assert client.records[seen].model is None, f"{case.label}: reached the model"


@dataclass
class CheckReport:
    """What `check_service` found for one service."""

    name: str
    version: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    max_batch_size: int
    setup_s: float = 0.0
    sample_input: dict[str, Any] | None = None
    sample_output: Any = None
    # Median seconds per item, through the pipeline, at batch 1 and at max_batch_size.
    item_latency_s: dict[int, float] = field(default_factory=dict)
    # Check name -> None when it passed, else what went wrong.
    checks: dict[str, str | None] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(problem is None for problem in self.checks.values())


def check_service(
    service: type[Service[Any, Any]] | ServiceSpec,
    *,
    settings: Settings | None = None,
    rounds: int = TIMING_ROUNDS,
    rel_tol: float = CHECK_REL_TOL,
    abs_tol: float = CHECK_ABS_TOL,
) -> CheckReport:
    """Load the service and run every check on it (see the module docstring); floats of a
    batch may differ from the items' alone by `rel_tol`/`abs_tol`."""
    spec = spec_of(service)
    size = spec.batching.max_batch_size
    report = CheckReport(
        spec.name, spec.version, spec.input_schema(), spec.output_schema(), max_batch_size=size
    )
    try:
        inputs = sample_inputs(spec, size)
    except ValueError as exc:
        report.checks["sample inputs"] = str(exc)
        return report
    report.checks["sample inputs"] = None
    with ServiceClient(spec, settings=settings) as client:
        report.setup_s = client.setup_s or 0.0
        report.sample_input = inputs[0]
        first = client.predict(inputs[0])
        report.sample_output = first.json()
        report.checks["sample prediction"] = None if first.ok else _problem(first)
        checks: list[tuple[str, Callable[[], None]]] = [
            (
                "batch invariance",
                lambda: assert_batch_invariant(
                    client, inputs[: min(size, 8)], rel_tol=rel_tol, abs_tol=abs_tol
                ),
            ),
            ("invalid inputs refused", lambda: assert_refuses_invalid_inputs(client)),
        ]
        for name, run in checks:
            try:
                run()
                report.checks[name] = None
            except AssertionError as exc:
                report.checks[name] = str(exc) or "failed"
        report.item_latency_s[1] = _per_item(lambda: client.predict(inputs[0]), 1, rounds)
        batch = (inputs * size)[:size]
        report.item_latency_s[size] = _per_item(lambda: client.predict_batch(batch), size, rounds)
    return report


def _problem(response: PredictResponse) -> str:
    return f"answered {response.status}: {response.body.decode()[:300]}"


def _per_item(call: Callable[[], object], items: int, rounds: int) -> float:
    """Median seconds per item of `call` over `rounds` runs (after one warm-up run)."""
    call()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) / items)
    return statistics.median(times)
