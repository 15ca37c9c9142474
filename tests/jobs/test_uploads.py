"""Resumable uploads: parts at offsets, resuming, caps, digests; refusals change nothing."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.jobs.conftest import Factory, JobsClient, jsonl

pytestmark = pytest.mark.services


def put(api: JobsClient, upload_id: str, offset: int, data: bytes, **headers: str) -> Any:
    return api.client.put(
        f"/v1/uploads/{upload_id}",
        params={"offset": offset},
        content=data,
        headers={"content-type": "application/octet-stream", **headers},
    )


def test_parts_resume_where_the_upload_ends(jobs_app: Factory) -> None:
    data = jsonl([{"x": i} for i in range(100)])
    with jobs_app(embedded=False) as api:
        upload = api.client.post("/v1/uploads").json()
        assert upload["size"] == 0
        assert upload["state"] == "open"
        assert upload["max_part_bytes"] == 4 * 1024 * 1024
        upload_id = upload["id"]
        assert put(api, upload_id, 0, data[:100]).json()["size"] == 100
        # A part sent twice (the client did not see the answer) is refused, not appended twice.
        again = put(api, upload_id, 0, data[:100])
        assert again.status_code == 409
        assert again.json()["error"]["details"] == {"size": 100}
        # After a broken connection, the client asks where to go on.
        assert api.client.get(f"/v1/uploads/{upload_id}").json()["size"] == 100
        assert put(api, upload_id, 100, data[100:]).status_code == 200
        done = api.client.post(
            f"/v1/uploads/{upload_id}/complete",
            json={"sha256": hashlib.sha256(data).hexdigest()},
        )
        assert done.status_code == 200, done.text
        assert done.json()["state"] == "complete"
        assert done.json()["size"] == len(data)
        # Complete is idempotent; a completed upload takes no more parts.
        assert api.client.post(f"/v1/uploads/{upload_id}/complete").status_code == 200
        assert put(api, upload_id, len(data), b"{}").status_code == 409
        job = api.submit(upload_id)
        assert job.status_code == 202
        assert job.json()["rows"]["total"] == 100


def test_a_file_in_many_small_parts_reads_as_one(jobs_app: Factory) -> None:
    data = jsonl([{"x": i, "label": "é" * (i % 3)} for i in range(60)])
    with jobs_app(chunk_size=7) as api:
        job = api.wait(api.submit(api.upload(data, part_bytes=13)).json()["id"])
        assert job["rows"] == {"total": 60, "done": 60, "failed": 0, "remaining": 0}


def test_refused_parts_change_nothing(jobs_app: Factory) -> None:
    with jobs_app(embedded=False, max_upload_bytes=1000, max_part_bytes=300) as api:
        upload_id = api.client.post("/v1/uploads").json()["id"]
        too_big = put(api, upload_id, 0, b"x" * 301)
        assert too_big.status_code == 413
        empty = put(api, upload_id, 0, b"")
        assert empty.status_code == 422
        ahead = put(api, upload_id, 5, b"abc")
        assert ahead.status_code == 409
        negative = api.client.put(f"/v1/uploads/{upload_id}", params={"offset": -1}, content=b"a")
        assert negative.status_code == 422
        multipart = put(api, upload_id, 0, b"--b\r\n", **{"content-type": "multipart/form-data"})
        assert multipart.status_code == 415
        assert api.client.get(f"/v1/uploads/{upload_id}").json()["size"] == 0
        for offset in range(0, 900, 300):
            assert put(api, upload_id, offset, b"y" * 300).status_code == 200
        over_total = put(api, upload_id, 900, b"z" * 101)
        assert over_total.status_code == 413
        assert api.client.get(f"/v1/uploads/{upload_id}").json()["size"] == 900


def test_completion_checks_the_digest_and_needs_bytes(jobs_app: Factory) -> None:
    with jobs_app(embedded=False) as api:
        empty = api.client.post("/v1/uploads").json()["id"]
        assert api.client.post(f"/v1/uploads/{empty}/complete").status_code == 409
        upload_id = api.client.post("/v1/uploads").json()["id"]
        put(api, upload_id, 0, b'{"x": 1}\n')
        wrong = api.client.post(f"/v1/uploads/{upload_id}/complete", json={"sha256": "0" * 64})
        assert wrong.status_code == 422
        assert api.client.get(f"/v1/uploads/{upload_id}").json()["state"] == "open"
        malformed = api.client.post(f"/v1/uploads/{upload_id}/complete", json={"sha256": "nope"})
        assert malformed.status_code == 422
        unknown = api.client.post(f"/v1/uploads/{upload_id}/complete", json={"x": 1})
        assert unknown.status_code == 422


def test_unknown_uploads_are_404(jobs_app: Factory) -> None:
    with jobs_app(embedded=False) as api:
        missing = "f" * 32
        assert api.client.get(f"/v1/uploads/{missing}").status_code == 404
        assert put(api, missing, 0, b"a").status_code == 404
        assert api.client.post(f"/v1/uploads/{missing}/complete").status_code == 404
        assert api.client.get("/v1/uploads/not-an-id").status_code == 422
