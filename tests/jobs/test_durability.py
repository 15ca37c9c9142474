"""Durability: a worker killed between a chunk's write and its ack, and two runners on one
queue: every row ends up in the results exactly once. `kill -9` of a real server (embedded
runner) or Celery worker mid-job is in the fault suite (tests/faults/test_jobs.py)."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from sqlalchemy import create_engine, text

from modelserve.db import migrate
from modelserve.jobs.processing import ChunkProcessor
from modelserve.jobs.runner import EmbeddedRunner
from modelserve.jobs.sql_queue import SqlJobQueue
from modelserve.jobs.work import ChunkResult, Lease
from tests.jobs.conftest import Factory, jsonl

pytestmark = pytest.mark.services


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
