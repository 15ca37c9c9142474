"""ServiceClient: the server's answers, in-process, for a corpus of good and bad requests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from modelserve import HttpConfig, ServiceUnavailableError, Settings
from modelserve.testing import PredictResponse, ServiceClient
from tests.support.client import serving
from tests.testing.services import Converted, Fragile, Reading, Sizer, Thermometer

GOOD = {"celsius": 100.0, "label": "kettle"}
LIMIT = 4096
SETTINGS = Settings(http=HttpConfig(max_body_bytes=LIMIT, max_batch_inputs=8))
JSON = {"content-type": "application/json"}

CORPUS: list[tuple[str, bytes, dict[str, str]]] = [
    ("/predict", orjson.dumps(GOOD), JSON),
    ("/predict", b'{"celsius": -300, "label": "x"}', JSON),
    ("/predict", b'{"celsius": "1", "label": "x"}', JSON),
    ("/predict", b'{"celsius": 1, "label": "x", "extra": 1}', JSON),
    ("/predict", b'{"celsius": 1, "celsius": 2, "label": "x"}', JSON),
    ("/predict", b'{"celsius": 1, "label": "\\u0000"}', JSON),
    ("/predict", b'{"celsius": 1', JSON),
    ("/predict", b"", JSON),
    ("/predict", orjson.dumps(GOOD), {"content-type": "text/plain"}),
    ("/predict", orjson.dumps(GOOD), {}),
    ("/predict", b"\x00\x01", {"content-type": "application/octet-stream"}),
    ("/predict", b"\x1f\x8b\x08\x00", {**JSON, "content-encoding": "gzip"}),
    ("/predict", b'{"celsius": 1, "label": "broken"}', JSON),
    ("/predict", b'{"celsius": 1, "label": "x"}' + b" " * LIMIT, JSON),
    ("/predict", orjson.dumps(GOOD), {**JSON, "x-request-id": "mine-7"}),
    ("/predict/batch", orjson.dumps({"inputs": [GOOD, {**GOOD, "label": "broken"}]}), JSON),
    ("/predict/batch", b'{"inputs": []}', JSON),
    ("/predict/batch", orjson.dumps({"inputs": [GOOD] * 9}), JSON),
    ("/versions/1/predict", orjson.dumps(GOOD), JSON),
    ("/versions/2/predict", orjson.dumps(GOOD), JSON),
]


@pytest.fixture(scope="module")
def client() -> Iterator[ServiceClient]:
    with ServiceClient(Thermometer, settings=SETTINGS) as client:
        yield client


@pytest.fixture(scope="module")
def server() -> Iterator[TestClient]:
    with serving([Thermometer], SETTINGS) as client:
        yield client


def kit_answer(client: ServiceClient, path: str, body: bytes, headers: dict[str, str]) -> Any:
    version = path.split("/")[2] if path.startswith("/versions/") else None
    response = client.post(
        body,
        batch=path.endswith("/batch"),
        version=version,
        content_type=None,
        headers=headers,
    )
    return comparable(response.status, response.headers, response.body)


def comparable(status: int, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
    kept = {k: v for k, v in headers.items() if k not in ("date", "server")}
    request_id = kept.pop("x-request-id")
    return status, kept, body.replace(request_id.encode(), b"<id>")


@pytest.mark.parametrize(("path", "body", "headers"), CORPUS)
def test_the_client_answers_what_the_server_answers(
    client: ServiceClient,
    server: TestClient,
    path: str,
    body: bytes,
    headers: dict[str, str],
) -> None:
    http = server.post(f"/v1/models/thermometer{path}", content=body, headers=headers)
    assert kit_answer(client, path, body, headers) == comparable(
        http.status_code, http.headers, http.content
    )


def test_predict_takes_models_and_dicts_and_reads_answers(client: ServiceClient) -> None:
    ok = client.predict(GOOD)
    assert (ok.status, ok.ok, ok.error_code) == (200, True, None)
    assert ok.json() == {"fahrenheit": 212.0, "label": "kettle"}
    assert ok.headers["x-model-version"] == "1"
    assert client.output(Reading(**GOOD)) == Converted(fahrenheit=212.0, label="kettle")
    bad = client.predict({"celsius": -300, "label": "x"})
    assert (bad.status, bad.error_code) == (422, "invalid_input")
    assert bad.json()["error"]["details"][0]["loc"] == ["celsius"]
    with pytest.raises(AssertionError, match="422"):
        client.output({"celsius": -300, "label": "x"})


def test_each_call_leaves_its_access_record(client: ServiceClient) -> None:
    seen = len(client.records)
    client.predict(GOOD, headers={"x-request-id": "rec-1"})
    client.predict({"celsius": "hot"})
    ok, bad = client.records[seen:]
    assert (ok.request_id, ok.status, ok.model, ok.version) == ("rec-1", 200, "thermometer", "1")
    assert (bad.status, bad.model, bad.error_code) == (422, None, "invalid_input")


def test_batches_keep_order_and_item_errors(client: ServiceClient) -> None:
    answer = client.predict_batch([GOOD, {**GOOD, "label": "broken"}, {**GOOD, "celsius": 0}])
    assert answer.json()["outputs"] == [
        {"fahrenheit": 212.0, "label": "kettle"},
        None,
        {"fahrenheit": 32.0, "label": "kettle"},
    ]
    assert [(e["index"], e["code"]) for e in answer.json()["errors"]] == [(1, "broken")]


def test_raw_bodies_go_to_a_bytes_model() -> None:
    with ServiceClient(Sizer) as client:
        assert client.predict_raw(b"\x00" * 10).json() == {"size": 10}
        too_long = client.predict_raw(b"a" * 65)
        assert (too_long.status, too_long.error_code) == (422, "invalid_input")


def test_a_setup_failure_is_raised_with_its_reason() -> None:
    client = ServiceClient(Fragile)
    with pytest.raises(ServiceUnavailableError, match="the weights file is missing"):
        client.start()
    with pytest.raises(RuntimeError, match="not started"):
        client.predict(GOOD)


async def test_the_client_works_from_async_tests(client: ServiceClient) -> None:
    # Its loop runs on a thread of its own, so a test's running loop does not get in the way.
    response: PredictResponse = client.predict(GOOD)
    assert response.status == 200
