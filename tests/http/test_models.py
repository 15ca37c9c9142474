"""Catalogue, health probes, OpenAPI, and overload/deadline behaviour in process."""

from __future__ import annotations

import concurrent.futures
import time

from modelserve import Settings
from tests.http.services import Broken, Gate, Summer, Upper
from tests.support.client import serving


def test_models_list_and_detail_show_schemas_and_policy() -> None:
    with serving([Summer, Upper]) as client:
        listing = client.get("/v1/models").json()
        assert listing["count"] == 2
        detail = client.get("/v1/models/summer").json()
        assert detail["version"] == "3"
        assert detail["status"] == "ready"
        assert detail["description"] == "Adds up a vector."
        assert detail["batching"]["max_batch_size"] == 8
        assert detail["input_schema"]["properties"]["values"]["maxItems"] == 16
        assert detail["input_schema"]["additionalProperties"] is False
        assert "total" in detail["output_schema"]["properties"]
        missing = client.get("/v1/models/nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "model_not_found"


def test_failed_setup_is_reported_and_others_keep_serving() -> None:
    with serving([Summer, Broken]) as client:
        assert client.get("/livez").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["models"] == {"summer": "ready", "broken": "failed"}
        broken = client.get("/v1/models/broken").json()
        assert broken["status"] == "failed" and "weights missing" in broken["reason"]
        response = client.post("/v1/models/broken/predict", json={"text": "x"})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "model_unavailable"
        assert "retry-after" in response.headers
        assert client.post("/v1/models/summer/predict", json={"values": [1]}).status_code == 200


def test_readyz_any_mode() -> None:
    with serving([Summer, Broken], Settings(ready_when_any=True)) as client:
        assert client.get("/readyz").status_code == 200


def test_openapi_documents_each_models_real_schemas() -> None:
    with serving([Summer]) as client:
        spec = client.get("/openapi.json").json()
        op = spec["paths"]["/v1/models/summer/predict"]["post"]
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/Vector")
        assert spec["components"]["schemas"]["Vector"]["additionalProperties"] is False
        ok = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        assert ok.endswith("/Summary")
        assert "503" in op["responses"]
        assert "/v1/models/summer/predict/batch" in spec["paths"]
        assert client.get("/docs").status_code == 200


def test_docs_can_be_switched_off() -> None:
    settings = Settings.model_validate({"http": {"docs_enabled": False}})
    with serving([Summer], settings) as client:
        assert client.get("/docs").status_code == 404
        assert client.get("/openapi.json").status_code == 404


def test_overload_sheds_with_retry_after_and_deadline_gives_504() -> None:
    Gate.release.clear()
    with serving([Gate]) as client:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [
                pool.submit(client.post, "/v1/models/gate/predict", json={"text": str(i)})
                for i in range(8)
            ]
            time.sleep(0.2)
            Gate.release.set()
            responses = [f.result() for f in futures]
        statuses = sorted(r.status_code for r in responses)
        # One running + max_queue=2 waiting; the rest are shed at once.
        shed = [r for r in responses if r.status_code == 503]
        assert len(shed) >= 5, statuses
        assert all(r.headers["retry-after"].isdigit() for r in shed)
        assert all(r.json()["error"]["code"] == "overloaded" for r in shed)
        assert all(s in (200, 503, 504) for s in statuses)
        stats = client.get("/v1/models/gate").json()["stats"]
        assert stats["shed"] == len(shed)
        # Service is healthy again afterwards.
        assert client.post("/v1/models/gate/predict", json={"text": "ok"}).status_code == 200


def test_deadline_exceeded_is_504_and_counted() -> None:
    Gate.release.clear()
    with serving([Gate]) as client:
        started = time.monotonic()
        response = client.post("/v1/models/gate/predict", json={"text": "slow"})
        elapsed = time.monotonic() - started
        Gate.release.set()
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "deadline_exceeded"
        assert elapsed < 0.5 * 1.1 + 0.3
        time.sleep(0.05)
        stats = client.get("/v1/models/gate").json()["stats"]
        assert stats["abandoned_running"] == 1
        assert client.post("/v1/models/gate/predict", json={"text": "ok"}).status_code == 200
