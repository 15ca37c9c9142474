"""Raw `application/octet-stream` bodies for models whose input is one bytes field."""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient

from modelserve import HttpConfig, Settings
from tests.http.services import Checksum, Summer
from tests.support.client import serving

RAW = {"content-type": "application/octet-stream"}


@pytest.fixture(scope="module")
def client() -> TestClient:
    settings = Settings(http=HttpConfig(max_body_bytes=4096))
    with serving([Checksum, Summer], settings) as c:
        yield c  # type: ignore[misc]


def items(client: TestClient, model: str) -> int:
    """Items the model has been given so far."""
    return int(client.get(f"/v1/models/{model}").json()["stats"]["items"])


def test_raw_body_reaches_the_model_byte_for_byte(client: TestClient) -> None:
    data = bytes(range(256)) * 3  # NUL, invalid UTF-8, every byte value
    response = client.post("/v1/models/checksum/predict", content=data, headers=RAW)
    assert response.status_code == 200
    assert response.json() == {"size": 768, "sha256": hashlib.sha256(data).hexdigest()}
    assert response.headers["x-model-version"]


def test_content_type_parameters_are_ignored(client: TestClient) -> None:
    response = client.post(
        "/v1/models/checksum/predict",
        content=b"\x00\x01",
        headers={"content-type": "Application/Octet-Stream; charset=binary"},
    )
    assert response.status_code == 200 and response.json()["size"] == 2


def test_the_same_model_still_takes_json(client: TestClient) -> None:
    response = client.post("/v1/models/checksum/predict", json={"data": "abc"})
    assert response.status_code == 200
    assert response.json() == {"size": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}


@pytest.mark.parametrize(("body", "msg"), [(b"", "at least 1"), (b"x" * 1025, "at most 1024")])
def test_field_constraints_apply_to_raw_bodies(client: TestClient, body: bytes, msg: str) -> None:
    before = items(client, "checksum")
    response = client.post("/v1/models/checksum/predict", content=body, headers=RAW)
    assert items(client, "checksum") == before
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["details"][0]["loc"] == ["body"] and msg in error["details"][0]["msg"]


def test_raw_body_over_the_server_limit_is_413(client: TestClient) -> None:
    response = client.post("/v1/models/checksum/predict", content=b"x" * 5000, headers=RAW)
    assert response.status_code == 413


def test_raw_body_to_a_json_model_is_415_and_runs_nothing(client: TestClient) -> None:
    before = items(client, "summer")
    response = client.post("/v1/models/summer/predict", content=b'{"values": [1]}', headers=RAW)
    assert items(client, "summer") == before
    assert response.status_code == 415
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert "takes JSON" in error["message"]


def test_raw_batch_requests_are_415(client: TestClient) -> None:
    response = client.post("/v1/models/checksum/predict/batch", content=b"abc", headers=RAW)
    assert response.status_code == 415
    assert "batch requests are JSON" in response.json()["error"]["message"]


def test_other_media_types_are_still_415(client: TestClient) -> None:
    response = client.post(
        "/v1/models/checksum/predict", content=b"abc", headers={"content-type": "image/png"}
    )
    assert response.status_code == 415
    assert "application/octet-stream" in response.json()["error"]["message"]


def test_openapi_documents_the_raw_body_only_where_it_is_taken(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    raw = paths["/v1/models/checksum/predict"]["post"]["requestBody"]["content"]
    # The field's own size limits (1 to 1024 bytes) apply to the raw body as well.
    assert raw["application/octet-stream"]["schema"] == {
        "type": "string",
        "format": "binary",
        "minLength": 1,
        "maxLength": 1024,
    }
    assert "application/json" in raw
    json_only = paths["/v1/models/summer/predict"]["post"]["requestBody"]["content"]
    assert "application/octet-stream" not in json_only
    batch = paths["/v1/models/checksum/predict/batch"]["post"]["requestBody"]["content"]
    assert "application/octet-stream" not in batch
