"""Several versions of one model: pinning, traffic policies, shadow, retire, and the hooks."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from modelserve import Service, ServiceSpec, batching
from modelserve.errors import AuthenticationError, ConflictError, ServiceUnavailableError
from modelserve.runtime.manager import ModelRuntime
from modelserve.runtime.traffic import TrafficPolicy
from modelserve.types import Principal, RequestRecord
from tests.support.client import serving


class In(BaseModel):
    x: float


class Out(BaseModel):
    y: float


class Scale(Service[In, Out]):
    name = "scale"
    version = "1"
    factor = 1.0
    batching = batching(max_batch_size=4, max_wait_ms=1)

    def predict(self, batch: list[In]) -> list[Out]:
        return [Out(y=i.x * self.factor) for i in batch]


class ScaleV2(Scale):
    version = "2"
    factor = 2.0


class BadSetup(Scale):
    version = "3"

    def setup(self, device: str) -> None:
        raise RuntimeError("no weights")


def v2_spec() -> ServiceSpec:
    return ServiceSpec.from_class(ScaleV2)


def run(client: TestClient, coro: Any) -> Any:
    """Run a coroutine on the app's event loop (the TestClient's portal)."""
    return client.portal.call(lambda: coro)  # type: ignore[union-attr]


def runtime_of(client: TestClient) -> ModelRuntime:
    runtime: ModelRuntime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def test_deploy_pin_switch_and_retire() -> None:
    with serving([Scale]) as client:
        runtime = runtime_of(client)
        predict = "/v1/models/scale/predict"
        assert client.post(predict, json={"x": 3}).json() == {"y": 3.0}
        run(client, runtime.deploy(v2_spec()))
        # Loaded but not routed: unpinned traffic stays on v1; v2 answers when pinned.
        assert client.post(predict, json={"x": 3}).headers["x-model-version"] == "1"
        pinned = client.post("/v1/models/scale/versions/2/predict", json={"x": 3})
        assert (pinned.json(), pinned.headers["x-model-version"]) == ({"y": 6.0}, "2")
        batch = client.post(
            "/v1/models/scale/versions/2/predict/batch", json={"inputs": [{"x": 1}]}
        )
        assert batch.json()["outputs"] == [{"y": 2.0}]
        run(client, runtime.set_policy("scale", TrafficPolicy(primary="2")))
        response = client.post(predict, json={"x": 3})
        assert (response.json(), response.headers["x-model-version"]) == ({"y": 6.0}, "2")
        info = client.get("/v1/models/scale").json()
        assert info["version"] == "2"
        assert info["traffic"]["primary"] == "2"
        assert sorted(v["version"] for v in info["versions"]) == ["1", "2"]
        run(client, runtime.retire("scale", "1"))
        assert client.post("/v1/models/scale/versions/1/predict", json={"x": 1}).status_code == 404
        assert list(runtime.versions("scale")) == ["2"]


def test_policy_and_retire_refuse_unsafe_changes() -> None:
    with serving([Scale]) as client:
        runtime = runtime_of(client)
        with pytest.raises(ConflictError, match="not loaded"):
            run(client, runtime.set_policy("scale", TrafficPolicy(primary="9")))
        with pytest.raises(ConflictError, match="still receives traffic"):
            run(client, runtime.retire("scale", "1"))
        with pytest.raises(ServiceUnavailableError) as info:
            run(client, runtime.deploy(ServiceSpec.from_class(BadSetup)))
        # The reason is generic (S11): the exception's text goes to the log only.
        assert info.value.details["reason"].startswith("setup failed")
        assert "no weights" not in info.value.details["reason"]
        assert list(runtime.versions("scale")) == ["1"]
        # Deploying twice is idempotent: one loaded copy.
        first = run(client, runtime.deploy(v2_spec()))
        second = run(client, runtime.deploy(v2_spec()))
        assert first is second


def test_canary_split_and_shadow_records() -> None:
    with serving([Scale]) as client:
        runtime = runtime_of(client)
        run(client, runtime.deploy(v2_spec()))
        policy = TrafficPolicy(primary="1", canary=(("2", 50.0),), shadow="2", shadow_percent=100)
        run(client, runtime.set_policy("scale", policy))
        versions = {
            client.post("/v1/models/scale/predict", json={"x": 1}).headers["x-model-version"]
            for _ in range(60)
        }
        assert versions == {"1", "2"}
        time.sleep(0.2)
        records = runtime.shadow_records("scale", limit=500)
        assert records
        from_v1 = [r for r in records if r.primary_version == "1"]
        assert from_v1
        assert all(not r.equal and r.max_abs_diff == pytest.approx(1.0) for r in from_v1)


class Guard:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def check_predict_now(self, headers: list[tuple[bytes, bytes]], model: str) -> Principal | None:
        return None  # always the awaited path, so every call is recorded there

    async def check_predict(self, headers: list[tuple[bytes, bytes]], model: str) -> Principal:
        self.calls.append(model)
        if (b"authorization", b"Bearer good") not in headers:
            raise AuthenticationError("missing or invalid credentials")
        return Principal(
            kind="api_key",
            subject="key-1",
            owner_id="u1",
            role="member",
            scopes=frozenset({"predict:*"}),
            rate_key="key-1",
        )


class Recorder:
    def __init__(self) -> None:
        self.records: list[RequestRecord] = []

    def on_request(self, record: RequestRecord) -> None:
        self.records.append(record)


def test_guard_runs_first_and_observers_see_every_answer() -> None:
    from modelserve.http.app import build_app

    guard, recorder = Guard(), Recorder()
    app = build_app(services=[Scale], guard=guard, observers=[recorder])
    with TestClient(app) as client:
        run(client, runtime_of(client).wait_loaded())
        denied = client.post("/v1/models/nope/predict", json={"x": 1})
        assert denied.status_code == 401
        assert denied.headers["www-authenticate"].startswith("Bearer")
        assert denied.json()["error"]["code"] == "unauthenticated"
        ok = client.post(
            "/v1/models/scale/predict", json={"x": 1}, headers={"authorization": "Bearer good"}
        )
        assert ok.status_code == 200
    assert guard.calls == ["nope", "scale"]
    first, second = recorder.records
    assert (first.status, first.error_code, first.model, first.principal) == (
        401,
        "unauthenticated",
        None,
        None,
    )
    assert first.route == "/v1/models/{name}/predict"
    assert (second.status, second.model, second.version) == (200, "scale", "1")
    assert second.principal is not None and second.principal.subject == "key-1"
    assert second.duration_s > 0


def test_retired_version_can_be_garbage_collected() -> None:
    import gc
    import weakref

    with serving([Scale]) as client:
        runtime = runtime_of(client)
        deployed = run(client, runtime.deploy(v2_spec()))
        client.post("/v1/models/scale/versions/2/predict", json={"x": 1})
        ref = weakref.ref(deployed)
        del deployed
        run(client, runtime.retire("scale", "2"))
        gc.collect()
        assert ref() is None


def test_concurrent_deploys_leave_one_copy() -> None:
    with serving([Scale]) as client:
        runtime = runtime_of(client)

        async def storm() -> None:
            specs = [dataclasses.replace(v2_spec()) for _ in range(8)]
            await asyncio.gather(*(runtime.deploy(s) for s in specs))

        run(client, storm())
        assert sorted(runtime.versions("scale")) == ["1", "2"]


class Bytes(BaseModel):
    data: bytes


class Length(BaseModel):
    n: int


class Measure(Service[Bytes, Length]):
    name = "measure"
    version = "1"
    batching = batching(max_batch_size=4, max_wait_ms=1)

    def predict(self, batch: list[Bytes]) -> list[Length]:
        return [Length(n=len(b.data)) for b in batch]


class MeasureV2(Measure):
    version = "2"


def test_a_shadow_copy_of_a_raw_body_is_read_as_raw() -> None:
    with serving([Measure]) as client:
        runtime = runtime_of(client)
        run(client, runtime.deploy(ServiceSpec.from_class(MeasureV2)))
        run(
            client,
            runtime.set_policy("measure", TrafficPolicy("1", shadow="2", shadow_percent=100)),
        )
        response = client.post(
            "/v1/models/measure/predict",
            content=b"\x00\x01\x02",
            headers={"content-type": "application/octet-stream"},
        )
        assert response.status_code == 200 and response.json() == {"n": 3}
        deadline = time.monotonic() + 5
        while not runtime.shadow_records("measure", limit=10) and time.monotonic() < deadline:
            time.sleep(0.01)
        (record,) = runtime.shadow_records("measure", limit=10)
        assert record.error is None and record.equal
