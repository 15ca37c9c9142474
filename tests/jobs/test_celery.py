"""Celery mode: the outbox publishes every chunk once the broker takes it, a worker decides
what a chunk's message needs next, malformed messages are dropped, the package works without
Celery, and a real server and `modelserve worker` on RabbitMQ run a job to the end."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from modelserve.jobs.delivery import LEASE_SLACK_S, NOT_SERVED_DELAY_S, ChunkDelivery
from modelserve.jobs.memory_queue import MemoryPublisher
from modelserve.jobs.outbox import OutboxRelay
from modelserve.jobs.sql_queue import SqlJobQueue
from modelserve.jobs.work import ChunkTask
from tests.e2e.server import launch
from tests.jobs.broker import Broker, launch_worker
from tests.jobs.conftest import Factory, JobsClient, jsonl, reset_jobs
from tests.jobs.test_durability import attempts
from tests.observability.support import free_port

pytestmark = pytest.mark.services

SERVICES = Path(__file__).with_name("services.py")


def sql_queue(api: JobsClient) -> SqlJobQueue:
    queue = api.processor.queue
    assert isinstance(queue, SqlJobQueue)
    return queue


def submit(api: JobsClient, rows: int) -> dict[str, Any]:
    response = api.submit(api.upload(jsonl([{"x": i} for i in range(rows)])))
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def test_the_outbox_publishes_each_chunk_once_the_broker_takes_it(jobs_app: Factory) -> None:
    with jobs_app(embedded=False) as api:
        job = submit(api, 45)  # chunks of 10: 5 chunks
        publisher = MemoryPublisher()
        relay = OutboxRelay(
            queue=sql_queue(api), publisher=publisher, config=api.processor.config, batch=2
        )
        publisher.down = True
        with pytest.raises(ConnectionRefusedError):
            api.call(relay.sweep())
        assert publisher.sent == []  # refused: nothing marked, the job is still queued
        assert api.job(job["id"])["state"] == "queued"
        publisher.down = False
        assert api.call(relay.sweep()) == 5
        assert [d.task for d in publisher.sent] == [ChunkTask(job["id"], i) for i in range(5)]
        assert {d.queue for d in publisher.sent} == {"modelserve.jobs"}
        assert api.call(relay.sweep()) == 0  # marked: never published twice by one relay
        api.burst()
        assert api.job(job["id"])["state"] == "succeeded"


def test_a_chunk_whose_next_message_was_lost_is_published_again(jobs_app: Factory) -> None:
    with jobs_app(embedded=False) as api:
        job = submit(api, 10)
        publisher = MemoryPublisher()
        relay = OutboxRelay(queue=sql_queue(api), publisher=publisher, config=api.processor.config)
        assert api.call(relay.sweep()) == 1
        delivery: ChunkDelivery = api.app.state.job_delivery
        api.call(delivery.unpublished(ChunkTask(job["id"], 0)))
        assert api.call(relay.sweep()) == 1
        assert len(publisher.sent) == 2


def test_a_delivered_chunk_runs_and_needs_no_other_message(jobs_app: Factory) -> None:
    with jobs_app(embedded=False) as api:
        job = submit(api, 20)
        delivery: ChunkDelivery = api.app.state.job_delivery
        assert api.call(delivery.handle(ChunkTask(job["id"], 0))) is None
        assert api.job(job["id"])["rows"]["done"] == 10
        # A duplicate message of a done chunk changes nothing and asks for nothing.
        assert api.call(delivery.handle(ChunkTask(job["id"], 0))) is None
        assert api.job(job["id"])["rows"]["done"] == 10
        assert api.call(delivery.handle(ChunkTask("0" * 32, 0))) is None  # no such chunk


def test_a_chunk_leased_elsewhere_is_looked_at_again_when_the_lease_would_expire(
    jobs_app: Factory, database_url: str
) -> None:
    with jobs_app(embedded=False, lease_s=20) as api:
        job = submit(api, 10)
        task = ChunkTask(job["id"], 0)
        # Another worker holds it (and then, say, is killed -9: its lease stays until expiry).
        assert api.call(sql_queue(api).lease_chunk(task)) is not None
        delivery: ChunkDelivery = api.app.state.job_delivery
        follow = api.call(delivery.handle(task))
        assert follow is not None and follow.task == task
        assert 20 - 2 < follow.countdown_s <= 20 + LEASE_SLACK_S
        assert attempts(database_url, job["id"]) == {0: 1}  # not run a second time meanwhile


def test_a_chunk_backing_off_is_looked_at_again_when_it_is_due(jobs_app: Factory) -> None:
    with jobs_app(embedded=False) as api:
        job = submit(api, 10)
        queue = sql_queue(api)
        lease = api.call(queue.lease_chunk(ChunkTask(job["id"], 0)))
        assert api.call(queue.retry_later(lease, error="overloaded", delay_s=30))
        delivery: ChunkDelivery = api.app.state.job_delivery
        follow = api.call(delivery.handle(ChunkTask(job["id"], 0)))
        assert follow is not None
        assert 25 < follow.countdown_s <= 30


def test_chunks_of_a_cancelled_job_need_no_message(jobs_app: Factory) -> None:
    with jobs_app(embedded=False) as api:
        job = submit(api, 10)
        assert api.client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
        delivery: ChunkDelivery = api.app.state.job_delivery
        assert api.call(delivery.handle(ChunkTask(job["id"], 0))) is None


def test_a_chunk_of_a_model_not_served_here_goes_back_untouched(
    jobs_app: Factory, database_url: str
) -> None:
    with jobs_app(embedded=False) as api:
        job = submit(api, 10)
        real: ChunkDelivery = api.app.state.job_delivery

        class NothingServed:
            def servable(self) -> set[tuple[str, str]]:
                return set()

        delivery = ChunkDelivery(
            processor=real.processor,
            queue=real.queue,
            gateway=NothingServed(),  # type: ignore[arg-type]
            config=real.config,
        )
        follow = api.call(delivery.handle(ChunkTask(job["id"], 0)))
        assert follow is not None and follow.countdown_s == NOT_SERVED_DELAY_S
        assert attempts(database_url, job["id"]) == {0: 0}


@pytest.mark.parametrize(
    ("job_id", "index"),
    [("0" * 31, 0), ("G" * 32, 0), (None, 0), ("0" * 32, -1), ("0" * 32, True), ("0" * 32, "1")],
)
def test_a_message_that_names_no_chunk_is_dropped(job_id: Any, index: Any) -> None:
    from modelserve.jobs.celery_app import _task_of

    assert _task_of(job_id, index) is None
    assert _task_of("0" * 32, 3) == ChunkTask("0" * 32, 3)


def test_the_package_and_the_embedded_runner_work_without_celery(tmp_path: Path) -> None:
    # A finder that refuses `celery` and `kombu`, as an installation without the extra would.
    script = f"""
import sys
class NoCelery:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("celery", "kombu"):
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, NoCelery())
from modelserve import Settings, create_app
from modelserve.cli.main import app
from modelserve.errors import ConfigError
from fastapi.testclient import TestClient
from tests.jobs.services import Doubler
settings = Settings(data_dir={str(tmp_path)!r})
with TestClient(create_app(settings, [Doubler])) as client:
    assert client.app.state.job_runner is not None
celery = Settings(data_dir={str(tmp_path)!r}, jobs={{"runner": "celery", "broker_url": "amqp://x//"}})
try:
    with TestClient(create_app(celery, [Doubler])):
        raise SystemExit("started without Celery")
except ConfigError as exc:
    assert "pip install" in exc.message, exc.message
assert "celery" not in sys.modules
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.stdout.strip().endswith("ok"), done.stdout + done.stderr


@pytest.mark.e2e
def test_a_server_and_a_worker_on_rabbitmq_run_a_job_to_the_end(
    broker: Broker, database_url: str, tmp_path: Path
) -> None:
    reset_jobs(database_url)
    env = {
        **broker.env(),
        "MODELSERVE_DATA_DIR": str(tmp_path / "data"),
        "MODELSERVE_DATABASE_URL": database_url,
        "MODELSERVE_JOBS__CHUNK_SIZE": "20",
    }
    metrics_port = free_port()
    worker_env = {**env, "MODELSERVE_OBSERVABILITY__METRICS_PORT": str(metrics_port)}
    rows = 200
    with (
        launch(tmp_path / "server", target=SERVICES, env=env) as server,
        launch_worker(tmp_path / "worker", target=SERVICES, env=worker_env, concurrency=2),
    ):
        client = server.client()
        upload_id: str = client.post("/v1/uploads").json()["id"]
        data = jsonl([{"x": i} for i in range(rows)] + [{"x": -1}])
        assert client.put(f"/v1/uploads/{upload_id}", params={"offset": 0}, content=data)
        assert client.post(f"/v1/uploads/{upload_id}/complete").status_code == 200
        created = client.post(
            "/v1/jobs",
            json={"model": "doubler", "input": {"upload_id": upload_id}, "format": "jsonl"},
        )
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        deadline = time.monotonic() + 60
        while (job := client.get(f"/v1/jobs/{job_id}").json())["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        assert job["state"] == "succeeded"
        assert job["rows"] == {"total": rows + 1, "done": rows, "failed": 1, "remaining": 0}
        results = client.get(f"/v1/jobs/{job_id}/results").content
        records = [orjson.loads(line) for line in results.splitlines()]
        assert [r["row"] for r in records] == list(range(rows))
        assert all(r["output"]["y"] == 2 * r["row"] for r in records)
        [error] = client.get(f"/v1/jobs/{job_id}/errors").json()["data"]
        assert (error["row"], error["code"]) == (rows, "negative")
        # The worker's pool processes are counted together on its metrics port.
        scraped = worker_metrics(metrics_port)
        assert scraped['modelserve_job_rows_total{model="doubler",outcome="succeeded"}'] == rows
        assert scraped['modelserve_job_rows_total{model="doubler",outcome="failed"}'] == 1
        chunks = scraped['modelserve_job_chunk_duration_seconds_count{model="doubler"}']
        assert chunks == (rows + 1 + 19) // 20
    assert set(attempts(database_url, job_id).values()) == {1}
    assert broker.depth() == 0


def worker_metrics(port: int) -> dict[str, float]:
    """The worker's /metrics as {sample with labels: value}."""
    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples: dict[str, float] = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_the_worker_command_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from modelserve.cli.main import app

    monkeypatch.delenv("MODELSERVE_JOBS__BROKER_URL", raising=False)
    result = CliRunner().invoke(app, ["worker", str(SERVICES)])
    assert result.exit_code == 2
    assert "MODELSERVE_JOBS__BROKER_URL" in result.stderr
    result = CliRunner().invoke(app, ["worker"])
    assert result.exit_code == 2
    assert "TARGET" in result.stderr
