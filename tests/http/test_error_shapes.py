"""One `details` shape per error code (issue "Hardening", finding 8): a list of problems for
`invalid_input` and `malformed_body`, an object or null for every other code."""

from __future__ import annotations

import orjson
import pytest

from modelserve.errors import (
    InvalidInputError,
    MalformedBodyError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    UnsupportedMediaError,
)
from modelserve.http.errors import render_error


def details_of(exc: Exception) -> object:
    _status, _headers, body = render_error(exc, "req-1")
    return orjson.loads(body)["error"]["details"]


def test_an_object_on_invalid_input_becomes_one_problem_per_key_without_the_input() -> None:
    exc = InvalidInputError("window must be between 1m and 30d", details={"window": "20s"})
    _status, _headers, body = render_error(exc, "req-1")
    assert orjson.loads(body)["error"]["details"] == [
        {"loc": ["window"], "msg": "window must be between 1m and 30d", "type": "value_error"}
    ]
    assert b"20s" not in body  # 422 details never echo the input


@pytest.mark.parametrize("exc", [InvalidInputError("bad"), MalformedBodyError("not json")])
def test_no_details_on_a_list_code_is_an_empty_list(exc: Exception) -> None:
    assert details_of(exc) == []


def test_a_list_stays_as_it_is() -> None:
    problems = [{"loc": ["body", "x"], "msg": "Field required", "type": "missing"}]
    assert details_of(InvalidInputError("bad", details=problems)) == problems


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (PayloadTooLargeError("too big"), None),
        (
            UnsupportedMediaError("no", details={"content_type": "text/plain"}),
            {"content_type": "text/plain"},
        ),
        (ServiceUnavailableError("loading", details={"reason": "loading"}), {"reason": "loading"}),
    ],
)
def test_other_codes_keep_an_object_or_null(exc: Exception, expected: object) -> None:
    assert details_of(exc) == expected
