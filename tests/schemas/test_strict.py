from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel, Field, ValidationError

from modelserve.schemas.strict import (
    find_bad_strings,
    find_duplicate_key,
    may_hold_bad_strings,
    strict_model,
)


class Point(BaseModel):
    x: float
    y: float = 0.0


class Shape(BaseModel):
    name: Annotated[str, Field(max_length=10)]
    points: list[Point]
    anchor: Point | None = None
    tags: dict[str, Point] = {}


def test_strict_twin_is_a_subclass_and_keeps_constraints() -> None:
    strict = strict_model(Shape)
    assert issubclass(strict, Shape)
    value = strict.model_validate_json('{"name": "sq", "points": [{"x": 1, "y": 2}]}')
    assert isinstance(value, Shape)
    assert isinstance(value.points[0], Point)
    with pytest.raises(ValidationError, match="at most 10"):
        strict.model_validate_json('{"name": "a-very-long-name", "points": []}')


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ('{"name": "s", "points": [{"x": "1.5"}]}', ("points", 0, "x")),
        ('{"name": "s", "points": [{"x": true}]}', ("points", 0, "x")),
        ('{"name": "s", "points": [{"x": NaN}]}', ("points", 0, "x")),
        ('{"name": "s", "points": [{"x": Infinity}]}', ("points", 0, "x")),
        ('{"name": "s", "points": [{"x": 1, "z": 1}]}', ("points", 0, "z")),
        ('{"name": "s", "points": [], "anchor": {"x": 1, "q": 0}}', ("anchor", "q")),
        ('{"name": "s", "points": [], "tags": {"a": {"x": -Infinity}}}', ("tags", "a", "x")),
        ('{"name": 5, "points": []}', ("name",)),
        ('{"name": "s", "points": [], "extra": 1}', ("extra",)),
    ],
)
def test_strict_twin_rejects_coercion_non_finite_and_unknown_fields(
    body: str, loc: tuple[object, ...]
) -> None:
    with pytest.raises(ValidationError) as info:
        strict_model(Shape).model_validate_json(body)
    assert tuple(info.value.errors()[0]["loc"]) == loc


def test_plain_model_stays_lenient() -> None:
    # The author's own model is untouched: strictness applies on the wire only.
    assert Point.model_validate({"x": "1.5"}).x == 1.5


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (rb'{"t": "plain"}', False),
        (rb'{"t": "\u00e9"}', False),
        (rb'{"t": "a\u0000b"}', True),
        (rb'{"t": "\ud800"}', True),
        (rb'{"t": "\\u0000"}', False),  # an escaped backslash followed by "u0000": harmless
        (rb'{"t": "\\\u0000"}', True),
    ],
)
def test_may_hold_bad_strings(body: bytes, expected: bool) -> None:
    assert may_hold_bad_strings(body) is expected


def test_find_bad_strings_names_the_field() -> None:
    errors = find_bad_strings(rb'{"a": ["ok", "x\u0000"], "b": {"c": "\ud800"}}')
    assert [e["loc"] for e in errors] == [["a", 1], ["b", "c"]]
    assert "NUL" in errors[0]["msg"] and "surrogate" in errors[1]["msg"]


def test_find_bad_strings_accepts_paired_surrogates() -> None:
    assert find_bad_strings(rb'{"a": "\ud83d\ude00"}') == []


def test_find_duplicate_key() -> None:
    assert find_duplicate_key(b'{"a": 1, "b": {"c": 1, "c": 2}}') == "c"
    assert find_duplicate_key(b'{"a": 1, "b": 2}') is None
    assert find_duplicate_key(b'{"a": 1}') is None
