"""isolation="inline": predict on the event loop, served end to end through the app."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from pydantic import BaseModel

from modelserve import ItemError, Service, batching
from modelserve.runtime import inline
from tests.support.client import serving


class In(BaseModel):
    x: float


class Out(BaseModel):
    y: float
    thread: str


class Double(Service[In, Out]):
    name = "double"
    isolation = "inline"
    batching = batching(max_batch_size=16, max_wait_ms=0)

    def setup(self, device: str) -> None:
        self.setup_thread = threading.current_thread().name

    def predict(self, batch: list[In]) -> list[Out | ItemError]:
        name = threading.current_thread().name
        return [
            ItemError("negative", code="negative") if i.x < 0 else Out(y=2 * i.x, thread=name)
            for i in batch
        ]


class AsyncDouble(Service[In, Out]):
    name = "adouble"
    isolation = "inline"

    async def predict(self, batch: list[In]) -> list[Out]:  # type: ignore[override]
        await asyncio.sleep(0.001)  # awaits I/O on the server's own loop
        return [Out(y=2 * i.x, thread=threading.current_thread().name) for i in batch]


class Slow(Service[In, Out]):
    name = "slow"
    isolation = "inline"

    def predict(self, batch: list[In]) -> list[Out]:
        time.sleep(inline.SLOW_BATCH_S * 2)
        return [Out(y=i.x, thread="") for i in batch]


def test_sync_inline_predict_runs_on_the_loop_thread() -> None:
    with serving([Double]) as client:
        response = client.post("/v1/models/double/predict", json={"x": 1.5})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["y"] == 3.0
        # The loop's thread (the TestClient's portal), never a modelserve replica thread.
        assert not body["thread"].startswith("modelserve-")
        rejected = client.post("/v1/models/double/predict", json={"x": -1})
        assert rejected.status_code == 422 and rejected.json()["error"]["code"] == "negative"
        batch = client.post(
            "/v1/models/double/predict/batch", json={"inputs": [{"x": 1}, {"x": 2}]}
        )
        assert [o["y"] for o in batch.json()["outputs"]] == [2.0, 4.0]
        info = client.get("/v1/models/double").json()
        assert info["isolation"] == "inline"


def test_async_inline_predict_runs_as_a_task_on_the_loop() -> None:
    with serving([AsyncDouble]) as client:
        response = client.post("/v1/models/adouble/predict", json={"x": 2})
        assert response.status_code == 200, response.text
        assert response.json()["y"] == 4.0
        assert not response.json()["thread"].startswith("modelserve-")


def test_slow_inline_predict_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with serving([Slow]) as client, caplog.at_level(logging.WARNING, "modelserve.runtime"):
        for _ in range(3):
            assert client.post("/v1/models/slow/predict", json={"x": 1}).status_code == 200
    warnings = [r for r in caplog.records if "isolation='inline'" in r.getMessage()]
    assert len(warnings) == 1  # once a minute, not per request
