"""docs/api.md: `Retry-After` is on every 503 the server sends, /readyz's included."""

from __future__ import annotations

import pytest

from modelserve.http.errors import ERROR_TABLE, render_error
from tests.http.services import Broken, Summer
from tests.support.client import serving


def test_readyz_503_carries_retry_after() -> None:
    with serving([Summer, Broken]) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.headers["retry-after"] == "1"
        declared = client.get("/openapi.json").json()["paths"]["/readyz"]["get"]["responses"]
        assert "Retry-After" in declared["503"]["headers"]


def test_readyz_200_has_no_retry_after() -> None:
    with serving([Summer]) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert "retry-after" not in ready.headers


@pytest.mark.parametrize(
    "error_class", sorted((c for c, (s, _) in ERROR_TABLE.items() if s == 503), key=str)
)
def test_every_503_error_carries_retry_after(error_class: type[Exception]) -> None:
    # Every other 503 is one of these errors rendered by `render_error` (the FastAPI handlers,
    # the predict fast path, the auth and exposure middlewares all go through it).
    status, headers, _ = render_error(error_class("unavailable"), "req-1")
    assert status == 503
    seconds = dict(headers)[b"retry-after"]
    assert int(seconds) >= 1
