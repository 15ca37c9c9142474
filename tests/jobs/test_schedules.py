"""Scheduled jobs: the API (create, list, show, pause, resume, delete; owners and scopes), and
the scheduler: a tick starts one job however many schedulers race for it, a tick whose server
stopped before submitting is submitted once later, ticks missed while down run once, a paused
schedule runs nothing, and a schedule reading a file of the input folder sees it as it is."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute

from modelserve import Settings
from modelserve.config import JobsConfig
from modelserve.jobs.cron import next_tick
from modelserve.jobs.scheduler import RECOVER_AFTER_S, JobScheduler, Tick
from tests.auth.support import api_routes, auth_config
from tests.auth.test_route_scopes import route_scopes
from tests.jobs.conftest import Factory, JobsClient, jsonl
from tests.jobs.test_auth import key_headers, users

pytestmark = pytest.mark.services


class Clock:
    """A settable UTC clock for schedulers."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def scheduler(api: JobsClient, clock: Clock) -> JobScheduler:
    """Another scheduler on the app's database (as another replica's would be)."""
    return JobScheduler(
        database=api.app.state.database,
        jobs=api.app.state.jobs,
        config=api.app.state.jobs.config,
        clock=clock,
    )


def create(
    api: JobsClient, upload_id: str, headers: dict[str, str] | None = None, **fields: Any
) -> dict[str, Any]:
    body = {
        "name": "nightly",
        "cron": "0 3 * * *",
        "job": {"model": "doubler", "input": {"upload_id": upload_id}, "format": "jsonl"},
        **fields,
    }
    response = api.client.post("/v1/schedules", json=body, headers=headers)
    assert response.status_code == 201, response.text
    schedule: dict[str, Any] = response.json()
    return schedule


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_create_list_show_pause_resume_delete(jobs_app: Factory) -> None:
    with jobs_app(scheduler=False) as api:
        upload = api.upload(jsonl([{"x": 1}]))
        made = create(api, upload, timezone="Europe/Paris")
        assert made["state"] == "active" and made["last_job_id"] is None
        # 03:00 in Paris is 02:00 UTC in winter.
        assert at(made["next_run_at"]).hour in (1, 2) and at(made["next_run_at"]).minute == 0
        assert api.client.get("/v1/schedules").json()["count"] == 1
        assert api.client.get(f"/v1/schedules/{made['id']}").json() == made
        paused = api.client.post(f"/v1/schedules/{made['id']}/pause").json()
        assert (paused["state"], paused["next_run_at"]) == ("paused", None)
        resumed = api.client.post(f"/v1/schedules/{made['id']}/resume").json()
        assert resumed["state"] == "active" and resumed["next_run_at"] == made["next_run_at"]
        assert api.client.delete(f"/v1/schedules/{made['id']}").status_code == 204
        assert api.client.get(f"/v1/schedules/{made['id']}").status_code == 404
        assert api.client.get("/v1/schedules").json()["count"] == 0


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"cron": "61 * * * *"}, 422, "invalid_input"),
        ({"cron": "0 0 30 2 *"}, 422, "invalid_input"),
        ({"timezone": "Mars/Olympus_Mons"}, 422, "invalid_input"),
        ({"model": "nope"}, 404, "model_not_found"),
        ({"upload_id": "0" * 32}, 404, "not_found"),
        ({"path": "daily.jsonl"}, 422, "invalid_input"),  # no input folder configured
    ],
)
def test_a_schedule_that_could_never_run_is_refused(
    jobs_app: Factory, change: dict[str, str], status: int, code: str
) -> None:
    with jobs_app(scheduler=False) as api:
        upload = api.upload(jsonl([{"x": 1}]))
        job: dict[str, Any] = {
            "model": change.get("model", "doubler"),
            "input": {"upload_id": change.get("upload_id", upload)},
            "format": "jsonl",
        }
        if "path" in change:
            job["input"] = {"path": change["path"]}
        body = {
            "name": "n",
            "cron": change.get("cron", "0 3 * * *"),
            "timezone": change.get("timezone", "UTC"),
            "job": job,
        }
        response = api.client.post("/v1/schedules", json=body)
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code


def test_a_tick_starts_one_job_however_many_schedulers_race(jobs_app: Factory) -> None:
    with jobs_app(scheduler=False) as api:
        made = create(api, api.upload(jsonl([{"x": i} for i in range(25)])), cron="*/5 * * * *")
        first = at(made["next_run_at"])
        clock = Clock(first - dt.timedelta(seconds=1))
        assert api.call(scheduler(api, clock).run_due()) == []  # not due yet
        clock.now = first + dt.timedelta(seconds=1)
        replicas = [scheduler(api, clock) for _ in range(4)]

        async def race() -> list[list[str]]:
            return list(await asyncio.gather(*(s.run_due() for s in replicas)))

        started = [job for jobs in api.call(race()) for job in jobs]
        assert len(started) == 1
        job = api.wait(started[0])
        assert job["state"] == "succeeded" and job["rows"]["done"] == 25
        assert job["idempotency_key"] == Tick(made["id"], first, None, None, {}).idempotency_key
        shown = api.client.get(f"/v1/schedules/{made['id']}").json()
        assert shown["last_job_id"] == started[0]
        assert at(shown["next_run_at"]) == first + dt.timedelta(minutes=5)
        # The next tick is another job.
        clock.now = first + dt.timedelta(minutes=5, seconds=1)
        [second] = api.call(replicas[0].run_due())
        assert second != started[0]


def test_ticks_missed_while_down_run_once_and_paused_schedules_not_at_all(
    jobs_app: Factory,
) -> None:
    with jobs_app(scheduler=False) as api:
        upload = api.upload(jsonl([{"x": 1}]))
        hourly = create(api, upload, cron="0 * * * *")
        paused = create(api, upload, cron="0 * * * *")
        api.client.post(f"/v1/schedules/{paused['id']}/pause")
        clock = Clock(at(hourly["next_run_at"]) + dt.timedelta(hours=5, minutes=30))
        assert len(api.call(scheduler(api, clock).run_due())) == 1  # five ticks missed: one job
        shown = api.client.get(f"/v1/schedules/{hourly['id']}").json()
        assert at(shown["next_run_at"]) == next_tick("0 * * * *", "UTC", clock.now)
        assert api.client.get("/v1/jobs").json()["count"] == 1


def test_a_tick_claimed_by_a_server_that_stopped_is_submitted_once_later(
    jobs_app: Factory,
) -> None:
    with jobs_app(scheduler=False) as api:
        made = create(api, api.upload(jsonl([{"x": 1}])), cron="0 * * * *")
        tick = at(made["next_run_at"])
        clock = Clock(tick + dt.timedelta(seconds=1))
        crashed = scheduler(api, clock)
        following = tick + dt.timedelta(hours=1)
        claimed = api.call(
            crashed._claim(Tick(made["id"], tick, None, None, {}), following, clock.now)
        )
        assert claimed  # ... and the server stopped before submitting
        assert api.call(scheduler(api, clock).run_due()) == []  # claimed: not run again
        clock.now = tick + dt.timedelta(seconds=RECOVER_AFTER_S + 5)
        [job_id] = api.call(scheduler(api, clock).run_due())
        assert api.call(scheduler(api, clock).run_due()) == []
        assert api.client.get("/v1/jobs").json()["count"] == 1
        assert api.wait(job_id)["state"] == "succeeded"


def test_a_schedule_reads_its_input_file_as_it_is_at_each_tick(
    jobs_app: Factory, database_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / "daily.jsonl").write_bytes(jsonl([{"x": 1}, {"x": 2}]))
    (tmp_path / "secret.jsonl").write_bytes(jsonl([{"x": 9}]))
    (folder / "escape.jsonl").symlink_to(tmp_path / "secret.jsonl")
    with jobs_app(scheduler=False, input_dir=folder, chunk_size=10) as api:
        for bad in ("../secret.jsonl", "/etc/passwd", "escape.jsonl", "missing.jsonl"):
            body = {
                "name": "n",
                "cron": "0 3 * * *",
                "job": {"model": "doubler", "input": {"path": bad}, "format": "jsonl"},
            }
            response = api.client.post("/v1/schedules", json=body)
            assert response.status_code in (404, 422), (bad, response.text)
        made = api.client.post(
            "/v1/schedules",
            json={
                "name": "daily",
                "cron": "0 3 * * *",
                "job": {"model": "doubler", "input": {"path": "daily.jsonl"}, "format": "jsonl"},
            },
        ).json()
        tick = at(made["next_run_at"])
        clock = Clock(tick + dt.timedelta(seconds=1))
        [first] = api.call(scheduler(api, clock).run_due())
        assert api.wait(first)["rows"]["total"] == 2
        (folder / "daily.jsonl").write_bytes(jsonl([{"x": i} for i in range(5)]))
        clock.now = tick + dt.timedelta(days=1, seconds=1)
        [second] = api.call(scheduler(api, clock).run_due())
        assert api.wait(second)["rows"]["total"] == 5
        assert [r["output"]["y"] for r in map(_json, api.results(second).splitlines())] == [
            0,
            2,
            4,
            6,
            8,
        ]


def _json(line: bytes) -> Any:
    import orjson

    return orjson.loads(line)


@pytest.fixture
def secured(jobs_app: Factory, database_url: str, tmp_path: Path) -> Iterator[JobsClient]:
    settings = Settings(
        data_dir=tmp_path,
        database_url=database_url,
        auth=auth_config(),
        jobs=JobsConfig(chunk_size=10, embedded=False, scheduler=False),
    )
    with jobs_app(settings=settings) as api:
        yield api


def test_schedules_belong_to_their_owner_and_need_the_jobs_scopes(secured: JobsClient) -> None:
    api = secured
    alice = key_headers(api, "jobs:read", "jobs:write")
    bob = key_headers(api, "jobs:read", "jobs:write")
    reader = key_headers(api, "jobs:read")
    upload = api.upload(jsonl([{"x": 1}]), headers=alice)
    made = create(api, upload, headers=alice)
    assert api.client.get("/v1/schedules", headers=bob).json()["count"] == 0
    for method, suffix in (("GET", ""), ("POST", "/pause"), ("POST", "/resume"), ("DELETE", "")):
        response = api.client.request(method, f"/v1/schedules/{made['id']}{suffix}", headers=bob)
        assert response.status_code == 404, (method, suffix)
    # Bob cannot schedule Alice's upload either.
    body = {"name": "x", "cron": "0 3 * * *", "job": made["job"]}
    assert api.client.post("/v1/schedules", json=body, headers=bob).status_code == 404
    assert api.client.post("/v1/schedules", json=body, headers=reader).status_code == 403
    _, admin = users(api).user_headers("admin")
    assert api.client.get("/v1/schedules", headers=admin).json()["count"] == 1
    events = api.client.get("/v1/audit", headers=admin, params={"limit": 100}).json()["data"]
    assert ("schedule.created", made["id"]) in [(e["event"], e["target_id"]) for e in events]
    routes = [
        (path, route, extra)
        for path, route, extra in api_routes(api.app)
        if path.startswith("/v1/schedules") and isinstance(route, APIRoute)
    ]
    assert len(routes) == 6
    for path, route, extra in routes:
        wanted = "jobs:read" if route.methods == {"GET"} else "jobs:write"
        assert route_scopes(route, extra) == {wanted}, (path, route.methods)


def test_a_tick_runs_as_the_owner_of_the_schedule(secured: JobsClient) -> None:
    api = secured
    alice = key_headers(api, "jobs:read", "jobs:write")
    made = create(api, api.upload(jsonl([{"x": 1}]), headers=alice), headers=alice)
    clock = Clock(at(made["next_run_at"]) + dt.timedelta(seconds=1))
    [job_id] = api.call(scheduler(api, clock).run_due())
    assert api.client.get(f"/v1/jobs/{job_id}", headers=alice).status_code == 200
    bob = key_headers(api, "jobs:read", "jobs:write")
    assert api.client.get(f"/v1/jobs/{job_id}", headers=bob).status_code == 404


def test_ticks_follow_the_schedules_time_zone_across_daylight_saving() -> None:
    # 03:00 in Paris is 01:00 UTC in summer and 02:00 UTC in winter (clocks went back on
    # 2026-10-25).
    before = next_tick("0 3 * * *", "Europe/Paris", dt.datetime(2026, 10, 24, 12, tzinfo=dt.UTC))
    after = next_tick("0 3 * * *", "Europe/Paris", dt.datetime(2026, 10, 25, 12, tzinfo=dt.UTC))
    assert before == dt.datetime(2026, 10, 25, 2, tzinfo=dt.UTC)
    assert after == dt.datetime(2026, 10, 26, 2, tzinfo=dt.UTC)
    summer = next_tick("0 3 * * *", "Europe/Paris", dt.datetime(2026, 7, 1, tzinfo=dt.UTC))
    assert summer == dt.datetime(2026, 7, 1, 1, tzinfo=dt.UTC)


def test_a_schedule_that_cannot_run_is_paused_and_the_others_still_run(
    jobs_app: Factory, database_url: str
) -> None:
    from sqlalchemy import create_engine, text

    from modelserve.db import migrate

    with jobs_app(scheduler=False) as api:
        upload = api.upload(jsonl([{"x": 1}]))
        broken = create(api, upload, cron="0 * * * *")
        fine = create(api, upload, cron="0 * * * *")
        # A zone that went missing from the system's tzdata after the schedule was made.
        engine = create_engine(migrate.sync_url(database_url))
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE job_schedules SET timezone = 'Gone/Zone' WHERE id = :i"),
                {"i": broken["id"]},
            )
        engine.dispose()
        clock = Clock(at(fine["next_run_at"]) + dt.timedelta(seconds=1))
        assert len(api.call(scheduler(api, clock).run_due())) == 1
        shown = api.client.get(f"/v1/schedules/{broken['id']}").json()
        assert shown["state"] == "paused" and "Gone/Zone" in shown["last_error"]
        assert api.client.get(f"/v1/schedules/{fine['id']}").json()["last_job_id"] is not None
