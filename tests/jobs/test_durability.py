"""Durability: a worker killed between a chunk's write and its ack, two runners on one queue,
and `kill -9` of a real server mid-job: every row ends up in the results exactly once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import create_engine, text

from modelserve.db import migrate
from modelserve.jobs.processing import ChunkProcessor
from modelserve.jobs.runner import EmbeddedRunner
from modelserve.jobs.sql_queue import SqlJobQueue
from modelserve.jobs.work import ChunkResult, Lease
from tests.e2e.server import kill_tree, launch
from tests.jobs.conftest import Factory, jsonl, reset_jobs

pytestmark = pytest.mark.services

SERVICES = Path(__file__).with_name("services.py")


class StallsBeforeAck(SqlJobQueue):
    """A worker that stops dead after writing a chunk's results, before acking them: it renews
    nothing (its lease runs out, as a killed process's does) until `wake` is set, then tries
    to ack with its old lease, as a frozen process that comes back would."""

    def __init__(self, inner: SqlJobQueue) -> None:
        super().__init__(inner.database, lease_s=inner.lease_s)
        self.stalled = asyncio.Event()
        self.wake = asyncio.Event()

    async def renew(self, lease: Lease) -> bool:
        return True

    async def ack(self, lease: Lease, result: ChunkResult) -> bool:
        assert result.result_sha256 is not None  # the checkpoint's write happened
        self.stalled.set()
        await self.wake.wait()
        return await super().ack(lease, result)


def sql_queue(processor: ChunkProcessor) -> SqlJobQueue:
    assert isinstance(processor.queue, SqlJobQueue)
    return processor.queue


def rows_of(results: bytes) -> list[int]:
    return [orjson.loads(line)["row"] for line in results.splitlines()]


def attempts(database_url: str, job_id: str) -> dict[int, int]:
    engine = create_engine(migrate.sync_url(database_url))
    try:
        with engine.connect() as connection:
            found = connection.execute(
                text('SELECT "index", attempts FROM job_chunks WHERE job_id = :j'), {"j": job_id}
            )
            return {int(i): int(a) for i, a in found}
    finally:
        engine.dispose()


def test_a_worker_killed_between_write_and_ack_loses_and_repeats_nothing(
    jobs_app: Factory, database_url: str
) -> None:
    with jobs_app(embedded=False, lease_s=0.5) as api:
        job = api.submit(api.upload(jsonl([{"x": i} for i in range(30)]))).json()
        real = api.processor

        async def start() -> tuple[StallsBeforeAck, asyncio.Task[str]]:
            queue = StallsBeforeAck(sql_queue(real))
            stalling = ChunkProcessor(
                queue=queue, store=real.store, gateway=real.gateway, config=real.config
            )
            [lease] = await queue.lease(servable=real.gateway.servable(), limit=1)
            task = asyncio.get_running_loop().create_task(stalling.process(lease))
            await queue.stalled.wait()
            return queue, task

        queue, task = api.call(start())
        assert api.job(job["id"])["rows"]["done"] == 0  # written, but not checkpointed
        # Another worker takes the chunk over once the stalled one's lease has expired.
        deadline = time.monotonic() + 30
        while api.job(job["id"])["state"] != "succeeded":
            api.burst()
            assert time.monotonic() < deadline, api.job(job["id"])
            time.sleep(0.05)

        async def wake() -> str:
            queue.wake.set()
            return await task

        assert api.call(wake()) == "lost"  # its late ack is refused: nothing counted twice
        assert api.job(job["id"])["rows"] == {"total": 30, "done": 30, "failed": 0, "remaining": 0}
        assert rows_of(api.results(job["id"])) == list(range(30))
        assert attempts(database_url, job["id"]) == {0: 2, 1: 1, 2: 1}


def test_two_runners_on_one_queue_run_each_chunk_once(jobs_app: Factory, database_url: str) -> None:
    with jobs_app(embedded=False, chunk_size=5) as api:
        jobs = [
            api.submit(api.upload(jsonl([{"x": i} for i in range(60)]))).json() for _ in range(2)
        ]
        real = api.processor

        def runner() -> EmbeddedRunner:
            queue = SqlJobQueue(sql_queue(real).database, lease_s=30)
            processor = ChunkProcessor(
                queue=queue, store=real.store, gateway=real.gateway, config=real.config
            )
            return EmbeddedRunner(
                queue=queue, processor=processor, gateway=real.gateway, config=real.config
            )

        async def both() -> list[int]:
            return list(await asyncio.gather(runner().burst(), runner().burst()))

        ran = api.call(both())
        assert sum(ran) == 24  # 2 jobs x 12 chunks, none twice
        for job in jobs:
            assert api.job(job["id"])["rows"]["done"] == 60
            assert rows_of(api.results(job["id"])) == list(range(60))
            assert set(attempts(database_url, job["id"]).values()) == {1}


def _upload(client: httpx.Client, data: bytes) -> str:
    upload_id: str = client.post("/v1/uploads").json()["id"]
    step = 4096
    for offset in range(0, len(data), step):
        response = client.put(
            f"/v1/uploads/{upload_id}",
            params={"offset": offset},
            content=data[offset : offset + step],
        )
        assert response.status_code == 200, response.text
    assert client.post(f"/v1/uploads/{upload_id}/complete").status_code == 200
    return upload_id


def _poll(client: httpx.Client, job_id: str, until: Any, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if until(job):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.02)


@pytest.mark.e2e
def test_kill_9_mid_job_and_a_new_server_finishes_every_row_once(
    database_url: str, tmp_path: Path
) -> None:
    reset_jobs(database_url)
    env = {
        "MODELSERVE_DATA_DIR": str(tmp_path / "data"),
        "MODELSERVE_DATABASE_URL": database_url,
        "MODELSERVE_JOBS__CHUNK_SIZE": "20",
        "MODELSERVE_JOBS__LEASE_S": "1",
        "MODELSERVE_JOBS__POLL_INTERVAL_S": "0.1",
        # Slow enough to be caught in the middle: about 3 s for the whole job.
        "JOBS_TEST_BATCH_DELAY_S": "0.05",
    }
    rows = 400
    with launch(tmp_path / "first", target=SERVICES, env=env) as first:
        client = first.client()
        upload_id = _upload(client, jsonl([{"x": i} for i in range(rows)]))
        job_id = client.post(
            "/v1/jobs",
            json={"model": "doubler", "input": {"upload_id": upload_id}, "format": "jsonl"},
        ).json()["id"]
        seen = _poll(client, job_id, lambda j: j["rows"]["done"] >= 100)
        kill_tree(first.proc)  # SIGKILL: no shutdown hook runs, leases stay taken
    assert seen["state"] == "running", seen
    with launch(tmp_path / "second", target=SERVICES, env=env) as second:
        client = second.client()
        job = _poll(client, job_id, lambda j: j["state"] in ("succeeded", "failed", "cancelled"))
        assert job["state"] == "succeeded"
        assert job["rows"] == {"total": rows, "done": rows, "failed": 0, "remaining": 0}
        results = client.get(f"/v1/jobs/{job_id}/results").content
        records = [orjson.loads(line) for line in results.splitlines()]
        assert [r["row"] for r in records] == list(range(rows))
        assert all(r["output"]["y"] == 2 * r["row"] for r in records)
        assert client.get(f"/v1/jobs/{job_id}/errors").json()["data"] == []
