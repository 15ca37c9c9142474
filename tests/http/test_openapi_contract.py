"""The OpenAPI document says what the server does: paths for what is served now, every status a
route answers, UTC timestamps, nullable output numbers, and `Allow` on every 405.

The whole-API check is tests/http/test_schemathesis.py; these pin each fix on its own, fast.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelserve.auth.keys import parse_scopes
from modelserve.errors import (
    ConflictError,
    InvalidInputError,
    MalformedBodyError,
    ResourceNotFoundError,
)
from modelserve.http.error_docs import error_responses
from modelserve.http.openai import POST_ROUTES as OPENAI_POSTS
from modelserve.registry import safety
from modelserve.schemas.auth import SCOPE_PATTERN
from modelserve.schemas.registry import NAME_WIRE_PATTERN, VERSION_WIRE_PATTERN
from modelserve.schemas.timestamps import as_utc
from tests.auth.support import serving_auth, settings_for
from tests.http.services import Checksum, NotFinite, Upper
from tests.registry.conftest import Factory, registry_app, unique, wait_for
from tests.support.client import serving

__all__ = ["registry_app"]  # the fixture, imported for the tests below

# Characters the registry's rules are about, plus a few that none allows.
NAMEISH = st.text(alphabet="aZ09._-+:/é \x00", max_size=70)


def paths(client: Any) -> dict[str, Any]:
    document: dict[str, Any] = client.get("/openapi.json").json()
    result: dict[str, Any] = document["paths"]
    return result


# -- the document follows what is served -----------------------------------------------------


def test_a_version_promoted_through_the_registry_gets_its_documented_paths(
    registry_app: Factory,
) -> None:
    name = unique("doc")
    with registry_app(serve=True) as api:
        assert f"/v1/models/{name}/predict" not in paths(api.client)
        api.push(name, scale=1.0)
        assert api.promote(name, "1").status_code == 200
        documented = paths(api.client)
        for path in (
            f"/v1/models/{name}/predict",
            f"/v1/models/{name}/predict/batch",
            f"/v1/models/{name}/versions/1/predict",
        ):
            assert "post" in documented[path], path
        body = documented[f"/v1/models/{name}/predict"]["post"]["requestBody"]
        ref = body["content"]["application/json"]["schema"]["$ref"]
        assert ref.rsplit("/", 1)[1] == "X"  # the version's own input model

        api.push(name, scale=2.0)
        assert api.promote(name, "2").status_code == 200
        assert f"/v1/models/{name}/versions/2/predict" in paths(api.client)
        # The retired version leaves the document once it has drained.
        wait_for(lambda: f"/v1/models/{name}/versions/1/predict" not in paths(api.client))


def test_generic_name_routes_are_routes_but_not_documented() -> None:
    with serving([Upper]) as client:
        documented = paths(client)
        assert not [p for p in documented if "{name}" in p and p.endswith(("/predict", "/batch"))]
        assert "/v1/models/upper/versions/1/predict" in documented
        wrong = client.get("/v1/models/anything/predict")
        assert wrong.status_code == 405
        assert wrong.headers["allow"] == "POST"


# -- statuses --------------------------------------------------------------------------------


def test_error_responses_map_classes_to_statuses_with_the_one_error_body() -> None:
    responses = error_responses(ResourceNotFoundError, ConflictError, InvalidInputError)
    assert sorted(responses) == [404, 409, 422]
    assert all(r["model"].__name__ == "ErrorResponse" for r in responses.values())
    assert responses[409]["description"] == "`conflict`"
    # A subclass is documented under its own code, next to its parent's.
    both = error_responses(InvalidInputError, MalformedBodyError)
    assert both[400]["description"] == "`malformed_body`"


def test_guarded_routes_document_401_and_body_routes_400(tmp_path: Path) -> None:
    settings = settings_for(f"sqlite:///{tmp_path / 'auth.db'}", tmp_path)
    with serving([Upper], settings, wait=False) as client:  # the server's app: create_app
        documented = paths(client)
    models = documented["/v1/models"]["get"]["responses"]
    assert {"401", "403", "429"} <= set(models)
    assert "401" not in documented["/livez"]["get"]["responses"]
    create_user = documented["/v1/users"]["post"]["responses"]
    assert {"400", "409", "413"} <= set(create_user)
    refresh = documented["/v1/auth/refresh"]["post"]["responses"]
    assert "400" in refresh
    for path, item in documented.items():
        # The Open Inference Protocol's routes answer its own shape, `{"error": "..."}`.
        shape = "/V2Error" if path.startswith("/v2/") else "/ErrorResponse"
        # The OpenAI-compatible routes answer OpenAI's error object.
        if path.startswith("/openai/") or path in OPENAI_POSTS:
            shape = "/OpenAIError"
        for operation in item.values():
            invalid = operation["responses"].get("422")
            if invalid is not None:
                schema = invalid["content"]["application/json"]["schema"]
                assert schema["$ref"].endswith(shape)


def test_a_body_that_is_not_json_is_malformed_body_on_every_route(tmp_path: Path) -> None:
    settings = settings_for(f"sqlite:///{tmp_path / 'auth.db'}", tmp_path)
    with serving_auth(settings, [Upper]) as api:
        response = api.client.post(
            "/v1/auth/refresh",
            content=b"\xff\xfe",
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_body"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/v1/registry/models", "GET, POST"),
        ("DELETE", "/v1/registry/models/m/versions/1", "GET, PATCH"),
        ("OPTIONS", "/v1/registry/models/m/traffic", "DELETE, PUT"),
        ("GET", "/v1/models/upper/predict", "POST"),
    ],
)
def test_a_405_names_every_method_of_the_path(
    registry_app: Factory, method: str, path: str, allow: str
) -> None:
    with registry_app(serve=False, services=[Upper]) as api:
        response = api.client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json()["error"]["code"] == "method_not_allowed"


# -- timestamps ------------------------------------------------------------------------------


def test_registry_timestamps_are_utc_with_an_offset(registry_app: Factory) -> None:
    name = unique("ts")
    with registry_app(serve=True) as api:
        api.push(name)
        moved = api.promote(name, "1").json()
        model = api.client.get(f"/v1/registry/models/{name}").json()
        version = api.client.get(f"/v1/registry/models/{name}/versions/1").json()
    for text in (model["created_at"], version["created_at"], moved["updated_at"]):
        assert text.endswith("Z"), text
        assert dt.datetime.fromisoformat(text).utcoffset() == dt.timedelta(0)


def test_as_utc_reads_naive_values_as_utc_and_converts_aware_ones() -> None:
    naive = dt.datetime(2026, 12, 7, 21, 12, 52)
    assert as_utc(naive) == naive.replace(tzinfo=dt.UTC)
    paris = dt.datetime(2026, 12, 7, 22, 12, 52, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert as_utc(paris) == naive.replace(tzinfo=dt.UTC)
    assert as_utc(paris).tzinfo is dt.UTC


# -- predict bodies --------------------------------------------------------------------------


def test_output_numbers_are_documented_nullable_with_the_header_that_flags_them() -> None:
    with serving([NotFinite, Upper, Checksum]) as client:
        document = client.get("/openapi.json").json()
        answer = client.post("/v1/models/nonfinite/predict", json={"text": "nan"})
    schemas = document["components"]["schemas"]
    assert schemas["Summary"]["properties"]["total"]["type"] == ["number", "null"]
    assert schemas["Summary"]["properties"]["count"]["type"] == "integer"
    ok = document["paths"]["/v1/models/nonfinite/predict"]["post"]["responses"]["200"]
    assert "X-Non-Finite-Output" in ok["headers"]
    assert answer.json()["total"] is None
    assert answer.headers["x-non-finite-output"] == "true"
    # Inputs say that strings hold no NUL (the strict twin refuses it), outputs say nothing.
    body = document["paths"]["/v1/models/upper/predict"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert schemas[ref]["properties"]["text"]["pattern"] == "^[^\\u0000]*$"
    raw = document["paths"]["/v1/models/checksum/predict"]["post"]["requestBody"]["content"]
    assert raw["application/octet-stream"]["schema"]["minLength"] == 1


# -- declared patterns are the checks' patterns ----------------------------------------------


def _accepted(check: Any, value: str) -> bool:
    try:
        check(value)
    except InvalidInputError:
        return False
    return True


@given(NAMEISH)
def test_the_documented_name_pattern_is_the_registrys_check(value: str) -> None:
    documented = re.fullmatch(NAME_WIRE_PATTERN, value) is not None and len(value) <= 63
    assert documented == _accepted(safety.check_name, value)


@given(NAMEISH)
def test_the_documented_version_pattern_is_the_registrys_check(value: str) -> None:
    documented = re.fullmatch(VERSION_WIRE_PATTERN, value) is not None and len(value) <= 64
    assert documented == _accepted(safety.check_version, value)


@given(st.one_of(NAMEISH.map(lambda s: f"predict:{s}"), st.sampled_from(["admin", "x"])))
def test_the_documented_scope_pattern_is_the_key_check(value: str) -> None:
    documented = re.fullmatch(SCOPE_PATTERN, value) is not None
    assert documented == _accepted(lambda s: parse_scopes([s]), value)
