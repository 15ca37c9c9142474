"""R25 over HTTP: 16 concurrent requests batched together, one poisoned; only it fails.

Also: a service may opt out (`isolate_failures = False`), and `predict` returning None is a
500 `invalid_model_output`, not an internal error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from modelserve import Service, Settings, batching, create_app
from modelserve.errors import ServiceDefinitionError
from modelserve.http.app import ModelserveApp
from modelserve.service.spec import ServiceSpec
from tests.observability.support import serve_in_thread

POISON = 13.0
CLIENTS = 16


class Number(BaseModel):
    x: float


class Doubled(BaseModel):
    y: float


def predict_or_raise(batch: list[Number]) -> list[Doubled]:
    if any(n.x == POISON for n in batch):
        raise ValueError("this input breaks the model")
    return [Doubled(y=2 * n.x) for n in batch]


class Fragile(Service[Number, Doubled]):
    """Raises for any batch holding the poisoned input; waits long enough to batch 16."""

    name = "fragile"
    batching = batching(max_batch_size=CLIENTS, max_wait_ms=2000)

    def predict(self, batch: list[Number]) -> list[Doubled]:
        return predict_or_raise(batch)


class FragileOptOut(Fragile):
    """The same, with predict declared unsafe to repeat."""

    name = "fragile-opt-out"
    isolate_failures = False


class NoneThread(Service[Number, Doubled]):
    name = "none-thread"

    def predict(self, batch: list[Number]) -> list[Doubled]:
        return None  # type: ignore[return-value]


class NoneInline(NoneThread):
    name = "none-inline"
    isolation = "inline"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, ModelserveApp]]:
    app = create_app(Settings(), [Fragile, FragileOptOut, NoneThread, NoneInline])
    with serve_in_thread(app) as url:
        yield url, app


def burst(url: str, model: str) -> list[httpx.Response]:
    """CLIENTS concurrent predicts, x = 0..15 (13 is the poisoned one)."""

    def one(x: int) -> httpx.Response:
        return httpx.post(f"{url}/v1/models/{model}/predict", json={"x": x}, timeout=30)

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(one, range(CLIENTS)))


def counters(app: ModelserveApp, model: str) -> Any:
    return app.state.runtime.get(model).counters


def test_only_the_poisoned_request_fails(served: tuple[str, ModelserveApp]) -> None:
    url, app = served
    responses = burst(url, "fragile")
    statuses = {x: r.status_code for x, r in enumerate(responses)}
    assert statuses == {x: 500 if x == POISON else 200 for x in range(CLIENTS)}
    poisoned = responses[int(POISON)].json()["error"]
    assert poisoned["code"] == "prediction_failed"
    assert "breaks" not in responses[int(POISON)].text  # 5xx bodies stay generic (S11)
    for x, response in enumerate(responses):
        if x != POISON:
            assert response.json() == {"y": 2.0 * x}
    # The poisoned input shared a batch (or nothing would have been re-run), and the re-runs
    # are counted, also in the Prometheus exposition.
    reruns = counters(app, "fragile").reruns
    assert reruns > 0
    exposition = httpx.get(f"{url}/metrics").text
    found = re.search(
        r'^modelserve_batch_isolation_reruns_total\{model="fragile",version="1"\} (\S+)$',
        exposition,
        re.MULTILINE,
    )
    assert found is not None and float(found.group(1)) == reruns
    # Still serving.
    assert httpx.post(f"{url}/v1/models/fragile/predict", json={"x": 1}).status_code == 200


def test_opting_out_fails_the_poisoned_requests_batch_mates(
    served: tuple[str, ModelserveApp],
) -> None:
    url, app = served
    statuses = [r.status_code for r in burst(url, "fragile-opt-out")]
    assert statuses[int(POISON)] == 500
    assert statuses.count(500) > 1  # at least one batch-mate failed with it
    assert counters(app, "fragile-opt-out").reruns == 0


@pytest.mark.parametrize("model", ["none-thread", "none-inline"])
def test_predict_returning_none_is_invalid_model_output(
    served: tuple[str, ModelserveApp], model: str
) -> None:
    url, _ = served
    response = httpx.post(f"{url}/v1/models/{model}/predict", json={"x": 1})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "invalid_model_output"


def test_isolate_failures_must_be_a_bool() -> None:
    class Vague(Fragile):
        name = "vague"
        isolate_failures = "no"  # type: ignore[assignment]

    with pytest.raises(ServiceDefinitionError, match="isolate_failures"):
        ServiceSpec.from_class(Vague)
    assert ServiceSpec.from_class(FragileOptOut).isolate_failures is False
    assert ServiceSpec.from_class(Fragile).isolate_failures is True
