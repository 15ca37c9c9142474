"""The predict endpoints in process: validation, errors, batching, headers."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from modelserve import HttpConfig, Settings
from tests.http.services import Crash, NotFinite, Summer, Upper, Wrong
from tests.support.client import serving


@pytest.fixture(scope="module")
def client() -> TestClient:
    settings = Settings(http=HttpConfig(max_body_bytes=4096, max_batch_inputs=5))
    with serving([Summer, Upper, Wrong, Crash, NotFinite], settings) as c:
        yield c  # type: ignore[misc]


def post(client: TestClient, path: str, body: bytes | str, **headers: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    response = client.post(
        path, content=body, headers={"content-type": "application/json", **headers}
    )
    return response.status_code, response.json()


def test_predict_returns_output_with_version_and_request_id(client: TestClient) -> None:
    response = client.post("/v1/models/summer/predict", json={"values": [1, 2.5]})
    assert response.status_code == 200
    assert response.json() == {"total": 3.5, "count": 2}
    assert response.headers["x-model-version"] == "3"
    assert len(response.headers["x-request-id"]) == 32


def test_client_request_id_is_echoed_when_plain(client: TestClient) -> None:
    ok = client.post(
        "/v1/models/summer/predict", json={"values": [1]}, headers={"x-request-id": "abc-123"}
    )
    assert ok.headers["x-request-id"] == "abc-123"
    bad = client.post(
        "/v1/models/summer/predict", json={"values": [1]}, headers={"x-request-id": "a b<script>"}
    )
    assert bad.headers["x-request-id"] != "a b<script>"


def test_async_predict(client: TestClient) -> None:
    assert client.post("/v1/models/upper/predict", json={"text": "hé"}).json() == {"text": "HÉ"}


@pytest.mark.parametrize(
    ("body", "status", "code", "loc"),
    [
        ('{"values": ["1.5"]}', 422, "invalid_input", ["values", 0]),
        ('{"values": [true]}', 422, "invalid_input", ["values", 0]),
        ('{"values": [null]}', 422, "invalid_input", ["values", 0]),
        ('{"values": [{"a": 1}]}', 422, "invalid_input", ["values", 0]),
        ('{"values": [NaN]}', 422, "invalid_input", ["values", 0]),
        ('{"values": [1e309]}', 422, "invalid_input", ["values", 0]),
        ('{"values": []}', 422, "invalid_input", ["values"]),
        ('{"values": [1], "extra": 2}', 422, "invalid_input", ["extra"]),
        ('{"values": [[1]]}', 422, "invalid_input", ["values", 0]),
        ("[1, 2]", 422, "invalid_input", []),
        ("3", 422, "invalid_input", []),
        ('{"values": [1]', 400, "malformed_body", []),
        ('{"values": [1],}', 400, "malformed_body", []),
        ("{'values': [1]}", 400, "malformed_body", []),
        ('{"values": [1]} // c', 400, "malformed_body", []),
        ('\ufeff{"values": [1]}', 400, "malformed_body", []),
        ('{"values": [1], "values": [2]}', 400, "malformed_body", []),
        ("", 400, "malformed_body", []),
    ],
)
def test_bad_inputs_are_4xx_naming_the_field(
    client: TestClient, body: str, status: int, code: str, loc: list[object]
) -> None:
    got_status, payload = post(client, "/v1/models/summer/predict", body)
    assert got_status == status, payload
    assert payload["error"]["code"] == code
    assert payload["error"]["request_id"]
    if loc:
        assert payload["error"]["details"][0]["loc"] == loc


def test_deep_nesting_and_huge_numbers_and_bad_utf8(client: TestClient) -> None:
    for body in (
        b"[" * 100_000,
        b'{"values": [' + b"9" * 5000 + b"]}",
        b'{"values": [1], "\xff": 1}',
    ):
        response = client.post(
            "/v1/models/summer/predict", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code in (400, 413, 422), response.text
    assert client.get("/livez").status_code == 200


@pytest.mark.parametrize("text", ["a\\u0000b", "\\ud800", "x\\udfff"])
def test_nul_and_lone_surrogates_are_refused(client: TestClient, text: str) -> None:
    status, payload = post(client, "/v1/models/upper/predict", '{"text": "' + text + '"}')
    assert status in (400, 422)
    assert payload["error"]["code"] in ("invalid_input", "malformed_body")


def test_unicode_round_trips_byte_exact(client: TestClient) -> None:
    text = "ab\u202ecd\u200b\U0001f600"
    response = client.post("/v1/models/upper/predict", json={"text": text})
    assert response.json()["text"] == text.upper()


def test_string_length_cap(client: TestClient) -> None:
    status, payload = post(client, "/v1/models/upper/predict", '{"text": "' + "x" * 65 + '"}')
    assert status == 422 and payload["error"]["details"][0]["loc"] == ["text"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_non_json_media_types_are_415(client: TestClient, content_type: str) -> None:
    response = client.post(
        "/v1/models/summer/predict",
        content=b'{"values": [1]}',
        headers={"content-type": content_type},
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_body_over_limit_is_413(client: TestClient) -> None:
    body = b'{"values": [' + b"1," * 3000 + b"1]}"
    response = client.post(
        "/v1/models/summer/predict", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_chunked_body_over_limit_is_413(client: TestClient) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"values": ['
        for _ in range(1000):
            yield b"1,1,1,"
        yield b"1]}"

    response = client.post(
        "/v1/models/summer/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_unknown_model_is_404(client: TestClient) -> None:
    response = client.post("/v1/models/nope/predict", json={"values": [1]})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_item_error_is_422_with_the_model_code(client: TestClient) -> None:
    response = client.post("/v1/models/summer/predict", json={"values": [-1]})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "negative"


def test_batch_endpoint_mixes_outputs_and_item_errors(client: TestClient) -> None:
    response = client.post(
        "/v1/models/summer/predict/batch",
        json={"inputs": [{"values": [1]}, {"values": [-1]}, {"values": [2, 3]}]},
    )
    assert response.status_code == 200
    assert response.json() == {
        "outputs": [{"total": 1.0, "count": 1}, None, {"total": 5.0, "count": 2}],
        "errors": [
            {
                "index": 1,
                "code": "negative",
                "message": "negative values are not supported",
                "details": None,
            }
        ],
    }


def test_batch_over_the_cap_is_422_naming_the_limit(client: TestClient) -> None:
    response = client.post(
        "/v1/models/summer/predict/batch", json={"inputs": [{"values": [1]}] * 6}
    )
    assert response.status_code == 422
    assert "at most 5" in response.json()["error"]["details"][0]["msg"]


def test_wrong_output_count_is_a_clear_500(client: TestClient) -> None:
    response = client.post("/v1/models/wrong/predict", json={"text": "x"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "invalid_model_output"
    assert "'wrong'" in response.json()["error"]["message"]


def test_model_exception_is_generic_500_without_internals(client: TestClient) -> None:
    response = client.post("/v1/models/crash/predict", json={"text": "x"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "prediction_failed"
    assert "secret" not in response.text and "Traceback" not in response.text


def test_non_finite_outputs_are_valid_json_null(client: TestClient) -> None:
    response = client.post("/v1/models/nonfinite/predict", json={"text": "nan"})
    assert response.status_code == 200
    assert response.json() == {"total": None, "count": 0}
    assert response.headers["x-non-finite-output"] == "true"
    ok = client.post("/v1/models/summer/predict", json={"values": [1]})
    assert "x-non-finite-output" not in ok.headers


def test_wrong_method_on_predict_is_405(client: TestClient) -> None:
    response = client.get("/v1/models/summer/predict")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_too_many_headers_is_431(client: TestClient) -> None:
    headers = {f"x-h{i}": "v" for i in range(150)}
    for path in ("/v1/models/summer/predict", "/v1/models"):
        response = client.post(path, json={"values": [1]}, headers=headers)
        assert response.status_code == 431
        assert response.json()["error"]["code"] == "too_many_headers"
