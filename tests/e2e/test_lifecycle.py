"""Process lifecycle of a real server: graceful shutdown under load (R1), a model that cannot
load among healthy ones (R19).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.broken_services import BROKEN_REASON
from tests.e2e.probes import wait_stats
from tests.e2e.server import BROKEN_SERVICES, ServerProcess, launch, send_signal
from tests.e2e.services import SLEEPER_BATCH

pytestmark = pytest.mark.e2e

GRACEFUL_TIMEOUT_S = 10.0
NAP_S = 1.5


# -- R1: graceful shutdown with requests in flight ---------------------------------------------


@pytest.fixture
def doomed_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of its own: the test ends it with SIGTERM."""
    with launch(tmp_path, graceful_timeout_s=GRACEFUL_TIMEOUT_S) as running:
        yield running


async def connect_after_sigterm(server: ServerProcess) -> str:
    """What a new client gets while the server drains: 'refused', or the status it answered."""
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=2.0) as late:
            response = await late.post("/v1/models/sleeper/predict", json={"seconds": 0.0})
    except httpx.ConnectError:
        return "refused"
    return str(response.status_code)


async def test_r1_sigterm_lets_every_in_flight_request_finish(
    doomed_server: ServerProcess,
) -> None:
    server = doomed_server
    path = "/v1/models/sleeper/predict"
    async with server.async_client() as ac:
        in_flight = [
            asyncio.create_task(ac.post(path, json={"seconds": NAP_S, "tag": tag}))
            for tag in range(SLEEPER_BATCH)
        ]
        # The sleeper's batch closes only when full: one running batch and an empty queue
        # means all SLEEPER_BATCH requests are inside the model.
        await wait_stats(ac, "sleeper", running_batches=1, queue_depth=0)
        signalled = time.perf_counter()
        send_signal(server, signal.SIGTERM)
        await asyncio.sleep(0.3)
        late = await connect_after_sigterm(server)
        still_running = sum(not task.done() for task in in_flight)
        responses = await asyncio.gather(*in_flight, return_exceptions=True)
    returncode = await asyncio.to_thread(server.proc.wait, GRACEFUL_TIMEOUT_S + 2)
    exit_s = time.perf_counter() - signalled
    print(
        f"R1 {SLEEPER_BATCH} in flight at SIGTERM: exit after {exit_s * 1000:.0f} ms"
        f" (graceful timeout {GRACEFUL_TIMEOUT_S:g} s); new connection: {late}"
    )

    assert still_running == SLEEPER_BATCH  # the late client really came during the drain
    assert late in ("refused", "503")
    failures = [r for r in responses if not isinstance(r, httpx.Response)]
    assert failures == []  # no resets, no timeouts
    ok = [r for r in responses if isinstance(r, httpx.Response)]
    assert [r.status_code for r in ok] == [200] * SLEEPER_BATCH
    assert [r.json() for r in ok] == [
        {"tag": tag, "batch_size": SLEEPER_BATCH} for tag in range(SLEEPER_BATCH)
    ]
    assert returncode == 0
    assert exit_s < GRACEFUL_TIMEOUT_S + 2
    log = server.stderr_text()
    assert "draining in-flight requests" in log
    assert "Application shutdown complete" in log
    assert "Traceback" not in log


# -- R1: past the graceful timeout, the lifespan does not wait all over again -------------------

SHORT_GRACE_S = 2.0


async def test_r1_past_the_graceful_timeout_the_drain_takes_only_what_is_left(
    tmp_path: Path,
) -> None:
    # 2 requests running and 2 queued on `gate`, each asking for 5 s: longer than the 2 s
    # graceful timeout. uvicorn waits the whole 2 s for their connections; the lifespan's drain
    # used to wait up to 2 s more (and the replicas' stop up to 5 s each, one after another),
    # which took the exit to 4.6 s where R1 allows 4. It must get what is left: nothing.
    with launch(tmp_path, graceful_timeout_s=SHORT_GRACE_S) as server:
        async with server.async_client() as ac:
            path = "/v1/models/gate/predict"
            calls = [
                asyncio.create_task(ac.post(path, json={"seconds": 5.0, "tag": tag}))
                for tag in range(4)
            ]
            await wait_stats(ac, "gate", running_batches=2, queue_depth=2)
            send_signal(server, signal.SIGTERM)
            returncode = await asyncio.to_thread(server.proc.wait, 60)
            answers = await asyncio.gather(*calls, return_exceptions=True)
        log = server.stderr_text()
    assert returncode == 0
    cut = log.index("timeout graceful shutdown exceeded")  # uvicorn waited the whole 2 s
    drained = log.index("draining in-flight requests for at most 0.0 s")
    assert cut < drained < log.index("Application shutdown complete")
    # The queued ones were refused at once, not after a drain of their own.
    statuses = [a.status_code for a in answers if isinstance(a, httpx.Response)]
    assert statuses.count(503) == 2
    assert "Traceback" not in log


# -- R19: one model fails to load --------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # /readyz stays 503 by design here, so wait until no model is still loading instead.
    with launch(
        tmp_path_factory.mktemp("broken"), target=BROKEN_SERVICES, wait_for="settled"
    ) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> httpx.Client:
    return server.client()


def test_r19_failed_model_is_reported_with_its_reason(client: httpx.Client) -> None:
    response = client.get("/v1/models/broken")
    assert response.status_code == 200
    info = response.json()
    assert info["status"] == "failed"
    assert BROKEN_REASON in info["reason"]
    assert "RuntimeError" in info["reason"]
    listing = {m["name"]: m["status"] for m in client.get("/v1/models").json()["data"]}
    assert listing == {"broken": "failed", "doubler": "ready", "halver": "ready"}


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/v1/models/broken/predict", {"x": 1.0}),
        ("/v1/models/broken/predict/batch", {"inputs": [{"x": 1.0}]}),
    ],
)
def test_r19_predict_on_failed_model_is_503_model_unavailable(
    client: httpx.Client, path: str, payload: dict[str, object]
) -> None:
    response = client.post(path, json=payload)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "model_unavailable"
    # Generic: the exception's text is for the log and admins' GET /v1/models/{name} (S11).
    assert error["details"]["reason"].startswith("setup failed (RuntimeError)")
    assert BROKEN_REASON not in response.text
    assert int(response.headers["retry-after"]) >= 1


def test_r19_readyz_is_503_while_any_model_failed(client: httpx.Client) -> None:
    # All-required semantics (the default; MODELSERVE_READY_WHEN_ANY=true relaxes it).
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "models": {"broken": "failed", "doubler": "ready", "halver": "ready"},
    }


def test_r19_healthy_models_keep_serving_and_the_process_stays_up(
    server: ServerProcess, client: httpx.Client
) -> None:
    assert client.get("/livez").status_code == 200
    doubled = client.post("/v1/models/doubler/predict", json={"x": 21.0})
    assert doubled.status_code == 200
    assert doubled.json() == {"y": 42.0}
    halved = client.post("/v1/models/halver/predict/batch", json={"inputs": [{"x": 3.0}]})
    assert halved.status_code == 200
    assert halved.json() == {"outputs": [{"y": 1.5}], "errors": []}
    assert halved.headers["x-model-version"] == "2"
    assert server.proc.poll() is None
    assert "failed to load" in server.stderr_text()


def test_r19_ready_when_any_turns_readyz_green(tmp_path: Path) -> None:
    with launch(
        tmp_path,
        target=BROKEN_SERVICES,
        env={"MODELSERVE_READY_WHEN_ANY": "true"},
        wait_for="settled",
    ) as relaxed:
        response = relaxed.client().get("/readyz")
    assert response.status_code == 200
    assert response.json()["models"]["broken"] == "failed"


def test_production_logs_are_one_json_object_per_line(tmp_path: Path) -> None:
    # uvicorn's own lines, the server's and the access log alike: a log shipper parses every
    # line, and every line went through the redaction step.
    with launch(
        tmp_path,
        target=BROKEN_SERVICES,
        env={"MODELSERVE_MODE": "prod", "MODELSERVE_AUTH__JWT_SECRET": "s" * 64},
        wait_for="settled",
    ) as server:
        assert server.client().get("/v1/models").status_code == 200
        time.sleep(0.5)  # access lines are written every 0.25 s
        text = server.stderr_text()
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    loggers = {r["logger"] for r in records}
    assert {"uvicorn.error", "modelserve.runtime", "modelserve.access"} <= loggers
    assert not any(name.startswith("sqlalchemy") for name in loggers)  # no SQL at info
    assert any("failed to load" in r["event"] for r in records)
