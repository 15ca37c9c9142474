"""Retention: finished jobs past `retention_days` go with their results, uploads nothing needs go
with their parts, and blobs no row names go once older than the grace; nothing a queued job, a
schedule or a registry version still needs is touched, and a blob written again is young again.

The sweeper runs on a settable clock: "31 days later" is a clock, not a wait. Blob ages are the
files' real write times, so a clock days ahead makes every blob written by the test old.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

import pytest

from modelserve.db.base import utcnow
from modelserve.jobs.retention import RetentionSweeper, SweepReport
from modelserve.registry.artifacts import LocalArtifactStore, default_store
from tests.jobs.conftest import Factory, JobsClient, jsonl
from tests.registry.conftest import RegistryClient, unique

pytestmark = pytest.mark.services

ROWS = [{"x": float(i)} for i in range(25)]


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now

    def later(self, **delta: float) -> Clock:
        self.now = utcnow() + dt.timedelta(**delta)
        return self


def store_of(api: JobsClient) -> LocalArtifactStore:
    settings = api.app.state.settings
    return default_store(settings.registry.artifact_dir, settings.data_dir)


def sweeper(api: JobsClient, clock: Clock) -> RetentionSweeper:
    return RetentionSweeper(
        database=api.app.state.database,
        store=store_of(api),
        config=api.app.state.jobs.config,
        clock=clock,
    )


def sweep(api: JobsClient, clock: Clock) -> SweepReport:
    report: SweepReport = api.call(sweeper(api, clock).sweep())
    return report


def digests(api: JobsClient) -> set[str]:
    return {blob.sha256 for blob in store_of(api).stored()}


def upload_status(api: JobsClient, upload_id: str) -> int:
    return api.client.get(f"/v1/uploads/{upload_id}").status_code


def schedule(api: JobsClient, upload_id: str) -> None:
    body = {
        "name": "nightly",
        "cron": "0 3 * * *",
        "job": {"model": "doubler", "input": {"upload_id": upload_id}, "format": "jsonl"},
    }
    response = api.client.post("/v1/schedules", json=body)
    assert response.status_code == 201, response.text


def test_what_nothing_needs_goes_and_what_is_needed_stays(jobs_app: Factory) -> None:
    with jobs_app(retention=False) as api:
        finished = api.run(jsonl(ROWS))
        assert finished["state"] == "succeeded"
        spare = api.upload(jsonl(ROWS[:3]))  # complete, read by nothing
        scheduled = api.upload(jsonl(ROWS[:4]))  # read by a schedule at every tick
        schedule(api, scheduled)
        abandoned = api.client.post("/v1/uploads").json()["id"]  # never completed
        before = digests(api)
        clock = Clock()

        assert sweep(api, clock) == SweepReport()  # nothing is old yet
        assert digests(api) == before

        report = sweep(api, clock.later(days=31))
        assert (report.jobs, report.uploads) == (1, 3)  # the job's upload, spare, abandoned
        assert report.blobs >= 2 and report.bytes_freed > 0  # results and parts
        assert api.client.get(f"/v1/jobs/{finished['id']}").status_code == 404
        assert api.client.get(f"/v1/jobs/{finished['id']}/results").status_code == 404
        for gone in (spare, abandoned):
            assert upload_status(api, gone) == 404
        assert upload_status(api, scheduled) == 200
        # The scheduled upload's bytes are still there: a job from it runs.
        job = api.submit(scheduled)
        assert job.status_code == 202, job.text
        assert api.wait(job.json()["id"])["state"] == "succeeded"

        # 29 days on, that job is within its 30 days: it and its results stay.
        assert sweep(api, clock.later(days=29)) == SweepReport()
        assert api.results(job.json()["id"])


def test_queued_jobs_and_their_inputs_are_never_expired(jobs_app: Factory) -> None:
    with jobs_app(embedded=False, scheduler=False, retention=False) as api:
        upload = api.upload(jsonl(ROWS))
        queued = api.submit(upload)
        assert queued.status_code == 202, queued.text
        report = sweep(api, Clock().later(days=400))
        assert (report.jobs, report.uploads, report.blobs) == (0, 0, 0)
        assert api.job(queued.json()["id"])["state"] == "queued"
        assert upload_status(api, upload) == 200
        assert api.burst() > 0
        assert api.wait(queued.json()["id"])["state"] == "succeeded"


def test_retention_days_0_keeps_finished_jobs(jobs_app: Factory) -> None:
    with jobs_app(retention=False, retention_days=0) as api:
        finished = api.run(jsonl(ROWS))
        assert sweep(api, Clock().later(days=4000)).jobs == 0
        assert api.results(finished["id"])


def test_blobs_live_through_their_grace_and_a_rewrite_makes_them_young(
    jobs_app: Factory,
) -> None:
    with jobs_app(retention=False, blob_grace_hours=24) as api:
        store = store_of(api)
        content = b"an orphan: a part whose row was never written"
        writer = store.writer(max_bytes=1024)
        writer.write(content)
        orphan = writer.commit().sha256
        clock = Clock()
        assert sweep(api, clock.later(hours=23)).blobs == 0
        assert orphan in digests(api)

        # Make it look two days old, then write the same bytes again: it is young again.
        old = time.time() - 2 * 86_400
        os.utime(store.blob_path(orphan), (old, old))
        again = store.writer(max_bytes=1024)
        again.write(content)
        assert again.commit().sha256 == orphan
        assert sweep(api, clock.later(hours=1)).blobs == 0

        report = sweep(api, clock.later(hours=25))
        assert report.blobs == 1 and report.bytes_freed == len(content)
        assert orphan not in digests(api)


def test_a_registry_version_s_files_are_never_swept(jobs_app: Factory) -> None:
    with jobs_app(retention=False) as api:
        registry = RegistryClient(api.client, api.app)
        name = unique("swept")
        created: dict[str, Any] = registry.push(name, scale=3.0)
        files = {f["sha256"] for f in created["files"]}
        assert files and files <= digests(api)
        sweep(api, Clock().later(days=400))
        assert files <= digests(api)
        # The version is whole.
        version = api.client.get(f"/v1/registry/models/{name}/versions/{created['version']}")
        assert version.status_code == 200, version.text


def test_sweeper_runs_in_the_server_and_stops_with_it(jobs_app: Factory) -> None:
    with jobs_app(retention_interval_s=0.05) as api:
        sweeper = api.app.state.job_sweeper
        assert sweeper is not None and sweeper._loop.running
    assert not sweeper._loop.running
