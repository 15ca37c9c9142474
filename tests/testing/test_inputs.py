"""Inputs from a Service's schema: valid ones pass the server's codec, invalid ones fail it."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelserve import ServiceSpec
from modelserve.errors import InvalidInputError
from modelserve.testing import input_strategy, invalid_inputs, sample_inputs
from modelserve.testing.inputs import codec_of
from tests.testing.services import Lookup, Shapes, Sizer, Thermometer

SPECS = [ServiceSpec.from_class(cls) for cls in (Thermometer, Shapes, Sizer)]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_sample_inputs_are_accepted_by_the_server(spec: ServiceSpec) -> None:
    inputs = sample_inputs(spec, 6)
    assert inputs
    codec = codec_of(spec)
    for value in inputs:
        codec.parse_one(orjson.dumps(value))  # raises if the server would refuse it
    assert len({orjson.dumps(v) for v in inputs}) == len(inputs)  # no repeats


def test_the_models_examples_come_first() -> None:
    spec = ServiceSpec.from_class(Shapes)
    assert sample_inputs(spec, 1) == [
        {
            "inner": {"weight": 7},
            "colour": "red",
            "mode": "a",
            "scores": [0.5],
            "blob": "xyz",
            "flag": True,
        }
    ]


def test_the_same_seed_gives_the_same_inputs() -> None:
    spec = ServiceSpec.from_class(Thermometer)
    assert sample_inputs(spec, 5, seed=3) == sample_inputs(spec, 5, seed=3)
    assert sample_inputs(spec, 5, seed=3) != sample_inputs(spec, 5, seed=4)


def test_a_schema_the_generator_cannot_meet_asks_for_examples() -> None:
    with pytest.raises(ValueError, match="add examples"):
        sample_inputs(ServiceSpec.from_class(Lookup))


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_invalid_inputs_are_refused_by_the_server(spec: ServiceSpec) -> None:
    codec = codec_of(spec)
    cases = invalid_inputs(spec)
    assert {"not JSON", "an unknown field", "a repeated key"} <= {c.label for c in cases}
    for case in cases:
        with pytest.raises(InvalidInputError):
            codec.parse_one(case.body)


def test_invalid_inputs_cover_each_fields_bounds() -> None:
    labels = {c.label for c in invalid_inputs(ServiceSpec.from_class(Thermometer))}
    assert {
        "'celsius' below its minimum",
        "'celsius' above its maximum",
        "'celsius' as a string",
        "'label' over its maxLength",
        "'label' holding NUL",
        "'celsius' missing",
    } <= labels


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_the_hypothesis_strategy_makes_only_valid_inputs(spec: ServiceSpec) -> None:
    codec = codec_of(spec)

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
    @given(input_strategy(spec))
    def check(value: dict[str, object]) -> None:
        codec.parse_one(orjson.dumps(value))

    check()


def test_the_strategy_composes_with_others() -> None:
    spec = ServiceSpec.from_class(Thermometer)

    @settings(max_examples=20, deadline=None)
    @given(st.lists(input_strategy(spec), min_size=1, max_size=3))
    def check(values: list[dict[str, object]]) -> None:
        assert all(isinstance(v["celsius"], float | int) for v in values)

    check()
