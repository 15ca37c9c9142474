"""/metrics, /v1/models/{name}/stats, the access middleware and `modelserve stats`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from modelserve.cli.main import app as cli
from modelserve.errors import PermissionDeniedError
from modelserve.http.observability_routes import stats_reader
from modelserve.types import Principal, RequestRecord
from tests.observability.services import Scorer
from tests.observability.support import (
    free_port,
    observed_app,
    serve_in_thread,
    serving,
    settings_for,
)


class Recorder:
    """A RequestObserver that keeps what it sees."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []

    def on_request(self, record: RequestRecord) -> None:
        self.records.append(record)


def test_metrics_on_the_public_port(tmp_path: Path) -> None:
    with serving(settings_for(tmp_path), [Scorer]) as (client, _):
        client.post("/v1/models/scorer/predict", json={"x": [1.0, 2.0]})
        response = client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text
        assert (
            'modelserve_model_requests_total{model="scorer",status="200",version="2"} 1.0' in text
        )
        assert 'modelserve_model_ready{model="scorer",version="2"} 1.0' in text
        assert "modelserve_process_resident_memory_bytes" in text
        openmetrics = client.get("/metrics", headers={"accept": "application/openmetrics-text"})
        assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
        assert openmetrics.text.endswith("# EOF\n")


def test_an_internal_port_takes_metrics_off_the_public_one(tmp_path: Path) -> None:
    port = free_port()
    settings = settings_for(tmp_path, metrics_port=port)
    with serving(settings, [Scorer]) as (client, _):
        client.post("/v1/models/scorer/predict", json={"x": [1.0]})
        assert client.get("/metrics").status_code == 404
        internal = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert internal.status_code == 200
        assert 'modelserve_inference_items_total{model="scorer",version="2"} 1.0' in internal.text
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1)  # closed with the app


def test_no_metrics_when_disabled(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, metrics_enabled=False)
    with serving(settings, [Scorer]) as (client, obs):
        assert obs.observer_factory is None and obs.metrics is None
        assert client.get("/metrics").status_code == 404


def test_the_access_middleware_records_route_templates(tmp_path: Path) -> None:
    recorder = Recorder()
    settings = settings_for(tmp_path, access_log=False)
    app, _ = observed_app(settings, [Scorer], observers=[recorder])

    with TestClient(app, raise_server_exceptions=False) as client:
        client.get("/v1/models/scorer")
        client.get("/v1/models/secret-token-in-path/stats")
        client.get("/no/such/path?api_key=abc")
        client.post("/v1/models/scorer/predict", json={"x": [1.0]})
        client.post("/v1/models", content=b"x" * 10, headers={"content-length": str(10**9)})
    routes = [(r.method, r.route, r.status) for r in recorder.records]
    assert ("GET", "/v1/models/{name}", 200) in routes
    assert ("GET", "/v1/models/{name}/stats", 404) in routes
    assert ("GET", "unmatched", 404) in routes
    assert ("POST", "/v1/models/{name}/predict", 200) in routes  # from the fast path
    assert ("POST", "unmatched", 413) in routes  # refused before routing, still counted
    assert all(r.request_id for r in recorder.records)
    assert not any("secret" in r.route or "api_key" in r.route for r in recorder.records)


def principal(*scopes: str) -> Principal:
    return Principal(
        kind="api_key",
        subject="k",
        owner_id="u",
        role="member",
        scopes=frozenset(scopes),
        rate_key="k",
    )


@pytest.mark.parametrize(
    ("scopes", "allowed"),
    [
        (("registry:read",), True),
        (("predict:scorer",), True),
        (("predict:*",), True),
        (("admin",), True),
        (("predict:other",), False),
        (("registry:write",), False),
        ((), False),
    ],
)
async def test_stats_need_registry_read_or_predict_on_the_model(
    scopes: tuple[str, ...], allowed: bool
) -> None:
    caller = principal(*scopes)
    if allowed:
        assert await stats_reader("scorer", caller) is caller
    else:
        with pytest.raises(PermissionDeniedError):
            await stats_reader("scorer", caller)


def feed(obs: Any, count: int, version: str = "2") -> None:
    assert obs.predlog is not None
    for index in range(count):
        obs.predlog.offer(
            model="scorer",
            version=version,
            request_id=f"r{index}",
            principal=None,
            status=200 if index % 10 else 503,
            latency_s=0.001 * (index % 7 + 1),
            body=b'{"x": [%d.0, 1.0]}' % index,
            output=b'{"score": %d.0}' % (index + 1),
        )


def test_stats_from_the_prediction_log(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, predlog_sample_rate=0.5)
    with serving(settings, [Scorer]) as (client, obs):
        feed(obs, 40)
        client.portal.call(obs.predlog.flush)  # type: ignore[union-attr]
        report = client.get("/v1/models/scorer/stats", params={"window": "15m"}).json()
        assert report["model"] == "scorer" and report["window"] == "15m"
        assert report["sample_rate"] == 0.5
        (version,) = report["versions"]
        assert version["version"] == "2" and version["sampled"] == 40
        assert version["requests"] == 80  # each sampled row stands for two
        assert version["server_error_rate"] == pytest.approx(0.1)
        assert {f["field"] for f in report["drift"]["fields"]} == {
            "input.x[0]",
            "input.x[1]",
            "output.score",
        }
        assert client.get("/v1/models/scorer/stats?window=2y").status_code == 422
        assert client.get("/v1/models/nope/stats").status_code == 404


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """The observed app on a real port (for the CLI), in a thread of this process."""
    settings = settings_for(tmp_path, predlog_sample_rate=1.0, access_log=False)
    app, obs = observed_app(settings, [Scorer])
    with serve_in_thread(app) as url:
        yield url, obs


def test_the_stats_command_renders_the_report(live_server: tuple[str, Any]) -> None:
    url, obs = live_server
    feed(obs, 30)
    time.sleep(1.5)  # the writer flushes every second
    result = CliRunner().invoke(cli, ["stats", "scorer", "--window", "1h", "--url", url])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "scorer" in out and "Traffic by version" in out and "input.x[0]" in out
    as_json = CliRunner().invoke(cli, ["stats", "scorer", "--url", url, "--json"])
    assert as_json.exit_code == 0 and '"versions"' in as_json.output
    bad = CliRunner().invoke(cli, ["stats", "scorer", "--url", url, "--window", "nope"])
    assert bad.exit_code == 2 and "window" in bad.output  # refused before the request


def test_the_prediction_log_records_a_raw_body_by_size_and_digest(tmp_path: Path) -> None:
    import datetime as dt
    import hashlib
    import json

    from modelserve.db.repos.predictions import list_predictions
    from tests.http.services import Checksum

    data = b"\x00\xff\xfe" * 100  # NUL and invalid UTF-8: neither belongs in a text column
    settings = settings_for(tmp_path, predlog_sample_rate=1.0, access_log=False)
    with serving(settings, [Checksum]) as (client, obs):
        response = client.post(
            "/v1/models/checksum/predict",
            content=data,
            headers={"content-type": "application/octet-stream"},
        )
        assert response.status_code == 200
        predlog = obs.predlog
        assert predlog is not None
        client.portal.call(predlog.flush)

        async def rows() -> list[Any]:
            now = dt.datetime.now(dt.UTC)
            async with predlog._database.session() as session:  # type: ignore[union-attr]
                return list(
                    await list_predictions(
                        session=session,
                        model="checksum",
                        since=now - dt.timedelta(hours=1),
                        until=now + dt.timedelta(seconds=1),
                        limit=10,
                    )
                )

        (row,) = client.portal.call(rows)
    assert json.loads(row.input_json) == {
        "content_type": "application/octet-stream",
        "bytes": 300,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    assert json.loads(row.output_json)["size"] == 300
