"""The jobs API: submit, read, results and errors, validation, idempotency, pagination."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from tests.jobs.conftest import Factory, jsonl

pytestmark = pytest.mark.services

UTC_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def test_a_job_runs_every_row_and_reports_progress(jobs_app: Factory) -> None:
    with jobs_app() as api:
        job = api.run(jsonl([{"x": i} for i in range(35)]))
        assert job["state"] == "succeeded"
        assert job["rows"] == {"total": 35, "done": 35, "failed": 0, "remaining": 0}
        assert job["chunks"] == {"total": 4, "failed": 0}
        assert job["version"] == "1"
        assert job["rate_rows_per_s"] > 0
        assert job["eta_s"] is None
        for field in ("created_at", "started_at", "finished_at"):
            assert UTC_Z.match(job[field]), job[field]
        lines = api.results(job["id"]).splitlines()
        assert [orjson.loads(line) for line in lines] == [
            {"row": i, "output": {"y": 2.0 * i, "label": ""}} for i in range(35)
        ]
        assert api.errors(job["id"]) == []


def test_bad_rows_are_reported_exactly_like_predict_requests(jobs_app: Factory) -> None:
    rows = [
        b'{"x": 1}',
        b'{"x": "1.5"}',  # strict: a string is not a number
        b'{"x": 2, "extra": true}',  # unknown field
        b"{not json",
        b'{"x": -3}',  # the model refuses it (ItemError)
        b'{"x": 1, "x": 2}',  # duplicate key
    ]
    with jobs_app() as api:
        job = api.run(b"\n".join(rows) + b"\n")
        assert job["state"] == "succeeded"
        assert job["rows"]["done"] == 1
        assert job["rows"]["failed"] == 5
        errors = {e["row"]: e for e in api.errors(job["id"])}
        for row in (1, 2, 3, 4, 5):
            http = api.client.post("/v1/models/doubler/predict", content=rows[row])
            body = http.json()["error"]
            assert errors[row]["code"] == body["code"], row
            assert errors[row]["message"] == body["message"], row
            assert errors[row]["details"] == body["details"], row


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"model": "doubler", "format": "jsonl"},
        {"model": "doubler", "input": {"upload_id": "nope"}, "format": "jsonl"},
        {"model": "Bad Name", "input": {"upload_id": "0" * 32}, "format": "jsonl"},
        {"model": "doubler", "input": {"upload_id": "0" * 32}, "format": "xml"},
        {"model": "doubler", "input": {"upload_id": "0" * 32}, "format": "jsonl", "chunk_size": 0},
        {"model": "doubler", "input": {"upload_id": "0" * 32}, "format": "jsonl", "priority": 1e9},
        {"model": "doubler", "input": {"upload_id": "0" * 32}, "format": "jsonl", "owner_id": "x"},
        {
            "model": "doubler",
            "input": {"upload_id": "0" * 32},
            "format": "jsonl",
            "idempotency_key": "bad\nkey",
        },
    ],
)
def test_malformed_submits_are_422_and_create_nothing(
    jobs_app: Factory, body: dict[str, Any]
) -> None:
    with jobs_app() as api:
        response = api.client.post("/v1/jobs", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_input"
        assert api.client.get("/v1/jobs").json()["count"] == 0


def test_unknown_model_upload_and_version_are_404(jobs_app: Factory) -> None:
    with jobs_app() as api:
        upload = api.upload(jsonl([{"x": 1}]))
        missing_model = api.submit(upload, model="nope")
        assert missing_model.status_code == 404
        assert missing_model.json()["error"]["code"] == "model_not_found"
        assert api.submit(upload, version="7").status_code == 404
        assert api.submit("0" * 32).status_code == 404
        assert api.submit(upload, version="production").status_code == 202


def test_unreadable_inputs_are_422(jobs_app: Factory) -> None:
    with jobs_app() as api:
        empty_lines = api.submit(api.upload(b"\n\n  \n"))
        assert empty_lines.status_code == 422
        assert "no rows" in empty_lines.json()["error"]["message"]
        not_parquet = api.submit(api.upload(b"PAR1 this is not parquet"), "parquet")
        assert not_parquet.status_code == 422
        no_header = api.submit(api.upload(b"\n"), "csv")
        assert no_header.status_code == 422
        repeated = api.submit(api.upload(b"x,x\n1,2\n"), "csv")
        assert repeated.status_code == 422
        assert api.client.get("/v1/jobs").json()["count"] == 0


def test_an_open_upload_cannot_feed_a_job(jobs_app: Factory) -> None:
    with jobs_app() as api:
        upload_id = api.client.post("/v1/uploads").json()["id"]
        api.client.put(f"/v1/uploads/{upload_id}", params={"offset": 0}, content=b'{"x":1}')
        response = api.submit(upload_id)
        assert response.status_code == 409
        assert "not complete" in response.json()["error"]["message"]


def test_same_idempotency_key_gives_the_same_job(jobs_app: Factory) -> None:
    with jobs_app(embedded=False) as api:
        upload = api.upload(jsonl([{"x": 1}, {"x": 2}]))
        first = api.submit(upload, idempotency_key="nightly-2026-12-07")
        again = api.submit(upload, idempotency_key="nightly-2026-12-07")
        assert (first.status_code, again.status_code) == (202, 200)
        assert again.json()["id"] == first.json()["id"]
        assert again.json()["idempotency_key"] == "nightly-2026-12-07"
        other = api.submit(upload, idempotency_key="nightly-2026-12-07", priority=5)
        assert other.status_code == 409
        assert other.json()["error"]["details"] == {"job_id": first.json()["id"]}
        fresh = api.submit(upload, idempotency_key="nightly-2026-12-08")
        assert fresh.status_code == 202
        assert fresh.json()["id"] != first.json()["id"]
        assert api.client.get("/v1/jobs").json()["count"] == 2


def test_list_pages_newest_first_and_filters_by_state(jobs_app: Factory) -> None:
    with jobs_app(embedded=False) as api:
        upload = api.upload(jsonl([{"x": 1}]))
        ids = [api.submit(upload).json()["id"] for _ in range(3)]
        cancelled = api.client.post(f"/v1/jobs/{ids[0]}/cancel")
        assert cancelled.status_code == 200
        page = api.client.get("/v1/jobs", params={"limit": 2}).json()
        assert page["count"] == 3
        assert [j["id"] for j in page["data"]] == [ids[2], ids[1]]
        rest = api.client.get("/v1/jobs", params={"limit": 2, "offset": 2}).json()
        assert [j["id"] for j in rest["data"]] == [ids[0]]
        queued = api.client.get("/v1/jobs", params={"state": "queued"}).json()
        assert sorted(j["id"] for j in queued["data"]) == sorted(ids[1:])
        assert api.client.get("/v1/jobs", params={"state": "done"}).status_code == 422
        assert api.client.get("/v1/jobs", params={"limit": 0}).status_code == 422
        assert api.client.get("/v1/jobs", params={"limit": 10**6}).json()["limit"] == 100


def test_unknown_and_malformed_job_ids(jobs_app: Factory) -> None:
    with jobs_app(embedded=False) as api:
        for path in ("", "/results", "/errors"):
            assert api.client.get(f"/v1/jobs/{'a' * 32}{path}").status_code == 404
            assert api.client.get(f"/v1/jobs/NOT-AN-ID{path}").status_code == 422
        for action in ("cancel", "retry"):
            assert api.client.post(f"/v1/jobs/{'a' * 32}/{action}").status_code == 404


def test_cancel_and_retry_follow_the_allowed_transitions(jobs_app: Factory) -> None:
    with jobs_app() as api:
        job = api.run(jsonl([{"x": 1}]))
        finished = api.client.post(f"/v1/jobs/{job['id']}/cancel")
        assert finished.status_code == 409
        assert finished.json()["error"]["details"] == {"state": "succeeded"}
        nothing_failed = api.client.post(f"/v1/jobs/{job['id']}/retry")
        assert nothing_failed.status_code == 409
        assert api.job(job["id"])["state"] == "succeeded"
