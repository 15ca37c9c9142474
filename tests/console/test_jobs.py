"""Batch jobs in the console: list with progress, a job's page with its failed rows, download,
cancel and retry refused when they do not apply, and others' jobs 404."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from tests.console.support import ConsoleClient, csrf_of
from tests.console.test_access import api_token

WAIT_S = 30.0


def run_job(console: ConsoleClient, headers: dict[str, str], rows: list[dict[str, Any]]) -> str:
    """Upload JSON lines, submit a job on `scaler`, wait until it finished; its id."""
    created = console.client.post("/v1/uploads", headers=headers)
    assert created.status_code == 201, created.text
    upload_id = created.json()["id"]
    data = b"".join(orjson.dumps(r) + b"\n" for r in rows)
    part = console.client.put(
        f"/v1/uploads/{upload_id}",
        params={"offset": 0},
        content=data,
        headers={"content-type": "application/octet-stream", **headers},
    )
    assert part.status_code == 200, part.text
    assert (
        console.client.post(f"/v1/uploads/{upload_id}/complete", headers=headers).status_code == 200
    )
    body = {
        "model": "scaler",
        "input": {"upload_id": upload_id},
        "format": "jsonl",
        "chunk_size": 2,
    }
    submitted = console.client.post("/v1/jobs", json=body, headers=headers)
    assert submitted.status_code == 202, submitted.text
    job_id: str = submitted.json()["id"]
    deadline = time.monotonic() + WAIT_S
    while console.client.get(f"/v1/jobs/{job_id}", headers=headers).json()["state"] in (
        "queued",
        "running",
    ):
        if time.monotonic() > deadline:
            pytest.fail("the job did not finish")
        time.sleep(0.02)
    return job_id


ROWS = [
    {"scale": 1.0, "values": [1.0, 2.0]},
    {"scale": -1.0, "values": [1.0]},
    {"scale": 2.0, "values": [3.0]},
]


def test_a_job_is_listed_shown_and_downloadable(fresh: ConsoleClient) -> None:
    owner = fresh.signed_in()
    job_id = run_job(fresh, api_token(fresh, owner), ROWS)
    listing = fresh.client.get("/console/jobs").text
    assert f'href="/console/jobs/{job_id}"' in listing
    assert "hx-trigger" not in listing  # nothing running: no polling
    page = fresh.client.get(f"/console/jobs/{job_id}")
    assert page.status_code == 200
    assert "<dd>2 / 3</dd>" in page.text  # rows done
    assert '<td class="num">1</td>' in page.text  # the bad row, by number
    download = fresh.client.get(f"/console/jobs/{job_id}/results?format=jsonl")
    assert download.status_code == 200
    assert download.headers["content-disposition"] == f'attachment; filename="job-{job_id}.jsonl"'
    assert download.headers["content-security-policy"].startswith("default-src 'none'")
    assert len(download.content.splitlines()) == 2
    refused = fresh.client.post(
        f"/console/jobs/{job_id}/cancel", data={"csrf_token": csrf_of(page.text)}
    )
    assert refused.status_code == 409  # already finished
    assert fresh.client.get(f"/console/jobs/{job_id}/results?format=xml").status_code == 422
    assert fresh.client.get("/console/jobs?state=nope").status_code == 422


def test_others_jobs_do_not_exist(fresh: ConsoleClient) -> None:
    owner = fresh.new_user()
    job_id = run_job(fresh, api_token(fresh, owner), ROWS[:1])
    fresh.signed_in()
    assert fresh.client.get(f"/console/jobs/{job_id}").status_code == 404
    assert job_id not in fresh.client.get("/console/jobs").text
    assert fresh.client.get(f"/console/jobs/{job_id}/results").status_code == 404
    token = fresh.csrf()
    assert (
        fresh.client.post(f"/console/jobs/{job_id}/retry", data={"csrf_token": token}).status_code
        == 404
    )
    fresh.client.cookies.clear()
    fresh.signed_in("admin")
    assert fresh.client.get(f"/console/jobs/{job_id}").status_code == 200


def make_schedule(console: ConsoleClient, headers: dict[str, str]) -> str:
    """A nightly schedule on `scaler` over a small upload; its id."""
    created = console.client.post("/v1/uploads", headers=headers)
    upload_id = created.json()["id"]
    data = orjson.dumps(ROWS[0]) + b"\n"
    console.client.put(
        f"/v1/uploads/{upload_id}",
        params={"offset": 0},
        content=data,
        headers={"content-type": "application/octet-stream", **headers},
    )
    assert (
        console.client.post(f"/v1/uploads/{upload_id}/complete", headers=headers).status_code == 200
    )
    body = {
        "name": "nightly-scale",
        "cron": "0 3 * * *",
        "job": {"model": "scaler", "input": {"upload_id": upload_id}, "format": "jsonl"},
    }
    response = console.client.post("/v1/schedules", json=body, headers=headers)
    assert response.status_code == 201, response.text
    schedule_id: str = response.json()["id"]
    return schedule_id


def test_schedules_are_listed_paused_resumed_and_deleted(fresh: ConsoleClient) -> None:
    owner = fresh.signed_in()
    headers = api_token(fresh, owner)
    schedule_id = make_schedule(fresh, headers)
    url = f"/v1/schedules/{schedule_id}"
    listing = fresh.client.get("/console/schedules")
    assert listing.status_code == 200
    assert "nightly-scale" in listing.text and "0 3 * * *" in listing.text
    token = csrf_of(listing.text)

    paused = fresh.client.post(
        f"/console/schedules/{schedule_id}/pause",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert paused.status_code == 303
    assert fresh.client.get(url, headers=headers).json()["state"] == "paused"
    assert "Schedule paused" in fresh.client.get(paused.headers["location"]).text
    resumed = fresh.client.post(
        f"/console/schedules/{schedule_id}/resume", data={"csrf_token": token}
    )
    assert "Schedule resumed" in resumed.text
    assert fresh.client.get(url, headers=headers).json()["next_run_at"] is not None

    confirm = fresh.client.get(f"/console/schedules/{schedule_id}/delete")
    assert confirm.status_code == 200 and "nightly-scale" in confirm.text
    # Without the CSRF token nothing is deleted.
    assert fresh.client.post(f"/console/schedules/{schedule_id}/delete").status_code == 403
    assert fresh.client.get(url, headers=headers).status_code == 200
    deleted = fresh.client.post(
        f"/console/schedules/{schedule_id}/delete", data={"csrf_token": token}
    )
    assert "Schedule deleted" in deleted.text
    assert fresh.client.get(url, headers=headers).status_code == 404
    fresh.drain_audit()
    events = fresh.client.get("/v1/audit", headers=headers).json()["data"]
    assert {"schedule.paused", "schedule.resumed", "schedule.deleted"} <= {
        e["event"] for e in events if e["target_id"] == schedule_id
    }


def test_others_schedules_do_not_exist(fresh: ConsoleClient) -> None:
    owner = fresh.new_user()
    schedule_id = make_schedule(fresh, api_token(fresh, owner))
    fresh.signed_in()
    assert schedule_id not in fresh.client.get("/console/schedules").text
    assert fresh.client.get(f"/console/schedules/{schedule_id}/delete").status_code == 404
    token = fresh.csrf()
    refused = fresh.client.post(
        f"/console/schedules/{schedule_id}/pause", data={"csrf_token": token}
    )
    assert refused.status_code == 404
    fresh.client.cookies.clear()
    fresh.signed_in("admin")
    assert schedule_id[:12] in fresh.client.get("/console/schedules").text
