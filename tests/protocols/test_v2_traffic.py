"""V2 infer requests follow the model's traffic policy like native ones: canary splits, shadow
copies (parsed by the shadow version's own tensor map) and pinned versions."""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi.testclient import TestClient

from modelserve import ServiceSpec
from modelserve.runtime.traffic import TrafficPolicy
from tests.http.test_versions import Scale, ScaleV2, run, runtime_of
from tests.support.client import serving


def infer(client: TestClient, path: str, xs: list[float]) -> Any:
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [len(xs)], "data": xs}]}
    return client.post(path, content=orjson.dumps(body))


def test_a_canary_split_and_a_shadow_copy() -> None:
    with serving([Scale]) as client:
        runtime = runtime_of(client)
        run(client, runtime.deploy(ServiceSpec.from_class(ScaleV2)))
        policy = TrafficPolicy(primary="1", canary=(("2", 50.0),), shadow="2", shadow_percent=100)
        run(client, runtime.set_policy("scale", policy))
        answers = {}
        for _ in range(60):
            response = infer(client, "/v2/models/scale/infer", [1.0, 2.0])
            assert response.status_code == 200, response.text
            body = response.json()
            # The version header and the body agree on which version answered, and the rows
            # are that version's (v2 doubles).
            assert response.headers["x-model-version"] == body["model_version"]
            answers[body["model_version"]] = body["outputs"][0]["data"]
        assert answers == {"1": [1.0, 2.0], "2": [2.0, 4.0]}
        deadline = time.monotonic() + 10
        while client.app.state.predict_endpoint.background and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.01)
        records = [
            r for r in runtime.shadow_records("scale", limit=500) if r.primary_version == "1"
        ]
        assert records
        # The shadow version parsed the V2 body itself: a real comparison, never an error.
        assert all(r.error is None for r in records)
        assert all(not r.equal and r.max_abs_diff == 2.0 for r in records)


def test_a_pinned_version_bypasses_the_policy() -> None:
    with serving([Scale]) as client:
        runtime = runtime_of(client)
        run(client, runtime.deploy(ServiceSpec.from_class(ScaleV2)))
        pinned = infer(client, "/v2/models/scale/versions/2/infer", [3.0])
        assert pinned.json()["outputs"][0]["data"] == [6.0]
        assert infer(client, "/v2/models/scale/infer", [3.0]).json()["model_version"] == "1"
        metadata = client.get("/v2/models/scale").json()
        assert metadata["versions"] == ["1", "2"]
        assert client.get("/v2/models/scale/versions/2/ready").json() == {
            "name": "scale",
            "ready": True,
        }
