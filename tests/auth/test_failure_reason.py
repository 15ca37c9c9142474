"""S11: a failing setup's exception text (paths, hostnames, secrets) never reaches callers.

Every caller gets a generic reason (and the request id); the full text goes to the log, and to
callers holding `admin` in GET /v1/models[/{name}].
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from modelserve import Service
from tests.auth.support import AuthClient, serving_auth, settings_for
from tests.http.services import Summer

SECRET_PATH = "/srv/models/secret-project/weights.bin"
PASSWORD = "hunter2-db-password"
MESSAGE = f"cannot open {SECRET_PATH} with postgresql://loader:{PASSWORD}@db.internal/models"


class Number(BaseModel):
    x: float


class Leaky(Service[Number, Number]):
    """Its setup fails with a message that holds a path and a password."""

    name = "leaky"

    def setup(self, device: str) -> None:
        raise OSError(MESSAGE)

    def predict(self, batch: list[Number]) -> list[Number]:
        raise AssertionError("never loaded")


@pytest.fixture
def served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> Iterator[tuple[AuthClient, pytest.LogCaptureFixture]]:
    caplog.set_level(logging.ERROR, logger="modelserve")
    settings = settings_for(f"sqlite:///{tmp_path / 'f.db'}", tmp_path)
    with serving_auth(settings, [Summer, Leaky]) as api:
        yield api, caplog


def leaks(text: str) -> list[str]:
    return [s for s in (SECRET_PATH, PASSWORD, "secret-project", "db.internal") if s in text]


def test_callers_get_a_generic_reason_and_the_log_the_full_text(
    served: tuple[AuthClient, pytest.LogCaptureFixture],
) -> None:
    api, caplog = served
    client = api.client
    _, member = api.user_headers()
    _, admin = api.user_headers("admin")
    # An admin's key without `admin` is no admin (effective scopes, not the owner's role).
    dev_key = api.new_key(admin, ["predict:*", "registry:read", "registry:write"])["key"]
    callers = {"member": member, "admin's dev key": {"x-api-key": dev_key}}
    for who, headers in callers.items():
        info = client.get("/v1/models/leaky", headers=headers)
        assert info.status_code == 200
        assert info.json()["status"] == "failed"
        reason = info.json()["reason"]
        assert reason.startswith("setup failed"), (who, reason)
        assert leaks(info.text) == [], who
        assert [v["reason"] for v in info.json()["versions"]] == [reason]
        listing = client.get("/v1/models", headers=headers)
        assert leaks(listing.text) == [], who
        for path, body in (
            ("/v1/models/leaky/predict", {"x": 1}),
            ("/v1/models/leaky/predict/batch", [{"x": 1}]),
        ):
            refused = client.post(path, json=body, headers=headers)
            assert refused.status_code == 503
            error = refused.json()["error"]
            assert error["code"] == "model_unavailable"
            assert error["details"]["reason"] == reason
            assert error["request_id"] == refused.headers["x-request-id"]
            assert leaks(refused.text) == [], (who, path)
    # Admins may still read the full text in the catalogue (never in a predict answer).
    full = client.get("/v1/models/leaky", headers=admin).json()
    assert MESSAGE in full["reason"] and "OSError" in full["reason"]
    assert leaks(client.post("/v1/models/leaky/predict", json={"x": 1}, headers=admin).text) == []
    # The operator's copy: the log record has all of it.
    # The model fails while the fixture starts the app: its record may belong to either phase.
    records = caplog.get_records("setup") + caplog.get_records("call")
    logged = "\n".join(r.getMessage() for r in records)
    assert MESSAGE in logged
    # The neighbour keeps serving.
    assert client.post("/v1/models/summer/predict", json={"values": [1]}, headers=member).is_success
