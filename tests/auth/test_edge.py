"""S8 (credentials only in headers), S11 (error hygiene), S12 (docs exposure), S15 (CORS),
S17 (production refuses unsafe secrets)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from modelserve import Settings
from modelserve.auth import AuthSystem, check_auth_settings
from modelserve.config import AuthConfig
from modelserve.db.engine import Database
from modelserve.errors import ConfigError
from tests.auth.support import FAST_HASHING, AuthClient, serving_auth, settings_for
from tests.http.services import Summer


@pytest.fixture
def key(lite: AuthClient) -> str:
    _, member = lite.user_headers()
    value: str = lite.new_key(member, ["predict:*"])["key"]
    return value


def test_key_only_counts_in_headers(
    lite: AuthClient, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = {"values": [1]}
    ok = lite.client.post("/v1/models/summer/predict", json=body, headers={"x-api-key": key})
    assert ok.status_code == 200
    bearer = lite.client.post(
        "/v1/models/summer/predict", json=body, headers={"authorization": f"Bearer {key}"}
    )
    assert bearer.status_code == 200
    refused = [
        lite.client.post(f"/v1/models/summer/predict?api_key={key}", json=body),
        lite.client.post("/v1/models/summer/predict", json={**body, "api_key": key}),
        lite.client.post("/v1/models/summer/predict", json=body, auth=("user", key)),
        lite.client.post("/v1/models/summer/predict", json=body, headers={"authorization": key}),
        lite.client.get(f"/v1/auth/me?api_key={key}"),
        lite.client.get(f"/v1/auth/me?access_token={key}", headers={"x-api-key": key}),
        lite.client.get("/v1/auth/me", headers={"authorization": f"Basic {key}"}),
        lite.client.get("/v1/auth/me", headers={"x-api-key": key, "authorization": "Bearer x"}),
        # One character changed (to one it is not already: a fixed "A" matched 1 key in 64).
        lite.client.get(
            "/v1/auth/me", headers={"x-api-key": key[:-1] + ("B" if key.endswith("A") else "A")}
        ),
    ]
    for response in refused:
        assert response.status_code == 401, response.request.url
        assert response.headers["www-authenticate"] == 'Bearer realm="modelserve"'
        assert key not in response.text
    # The server's own records (the test client logs the URLs it was asked to send).
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("modelserve"))
    assert key not in logged and key[12:] not in logged


def test_server_errors_are_generic(lite: AuthClient) -> None:
    _, admin = lite.user_headers("admin")

    async def break_table() -> None:
        from sqlalchemy import text

        async with lite.auth.database.session() as session:
            await session.execute(text("ALTER TABLE api_keys RENAME TO api_keys_gone"))

    lite.call(break_table)
    response = lite.client.get("/v1/keys", headers=admin)
    # SQLite reports a missing table as an OperationalError, which `db/` maps to 503.
    assert response.status_code in (500, 503)
    error = response.json()["error"]
    assert error["code"] in ("internal_error", "database_unavailable")
    assert error["details"] is None
    assert error["request_id"] == response.headers["x-request-id"]
    for leak in ("api_keys", "SELECT", "sqlite", "Traceback", ".py"):
        assert leak not in response.text


@pytest.mark.parametrize(
    ("exposure", "anonymous", "with_key"),
    [("public", 200, 200), ("authenticated", 401, 200), ("disabled", 404, 404)],
)
def test_docs_exposure(
    sqlite_url: str, tmp_path: Path, exposure: str, anonymous: int, with_key: int
) -> None:
    settings = settings_for(sqlite_url, tmp_path, docs_exposure=exposure, metrics_exposure=exposure)
    with serving_auth(settings, [Summer]) as api:
        _, member = api.user_headers()
        key = api.new_key(member, ["predict:*"])["key"]
        for path in ("/openapi.json", "/docs", "/redoc"):
            assert api.client.get(path).status_code == anonymous, path
            assert api.client.get(path, headers={"x-api-key": key}).status_code == with_key
        if exposure != "public":
            assert api.client.get("/metrics").status_code == anonymous
        # Probes stay open whatever the docs do.
        assert api.client.get("/livez").status_code == 200


def test_cors_is_off_by_default(lite: AuthClient) -> None:
    response = lite.client.options(
        "/v1/models",
        headers={"origin": "https://evil.example", "access-control-request-method": "GET"},
    )
    assert "access-control-allow-origin" not in response.headers


def test_cors_allows_only_configured_origins(sqlite_url: str, tmp_path: Path) -> None:
    settings = settings_for(
        sqlite_url,
        tmp_path,
        cors_origins=("https://app.example",),
        cors_allow_credentials=True,
    )
    with serving_auth(settings, [Summer]) as api:
        _, member = api.user_headers()
        key = api.new_key(member, ["predict:*"])["key"]
        for origin, allowed in (("https://app.example", True), ("https://evil.example", False)):
            preflight = api.client.options(
                "/v1/models/summer/predict",
                headers={
                    "origin": origin,
                    "access-control-request-method": "POST",
                    "access-control-request-headers": "authorization,content-type",
                },
            )
            simple = api.client.post(
                "/v1/models/summer/predict",
                json={"values": [1]},
                headers={"origin": origin, "x-api-key": key},
            )
            for response in (preflight, simple):
                got = response.headers.get("access-control-allow-origin")
                assert got == (origin if allowed else None), (origin, response.status_code)
                assert got != "*"


def test_cors_wildcard_with_credentials_is_refused() -> None:
    with pytest.raises(ValidationError, match="cors_allow_credentials"):
        AuthConfig(cors_origins=("*",), cors_allow_credentials=True)
    with pytest.raises(ValidationError):
        AuthConfig(cors_origins=("https://app.example/path",))


@pytest.mark.parametrize(
    "secret",
    [None, "changeme", "please-change-me-" * 3, "a" * 64, "short-but-random-Zx81"],
)
def test_production_refuses_weak_or_missing_secrets(secret: str | None, tmp_path: Path) -> None:
    settings = Settings(mode="prod", data_dir=tmp_path, auth=AuthConfig(jwt_secret=secret))
    with pytest.raises(ConfigError, match="MODELSERVE_AUTH__JWT_SECRET"):
        check_auth_settings(settings)
    with pytest.raises(ConfigError):
        AuthSystem(settings, Database(f"sqlite:///{tmp_path / 'x.db'}"))


def test_production_accepts_a_real_secret_and_needs_a_key_for_eddsa(tmp_path: Path) -> None:
    good = Settings(
        mode="prod", auth=AuthConfig(jwt_secret="Vq3x9-kZ2pL7wR4tY8uN1mB6cJ0hG5fD", **FAST_HASHING)
    )
    check_auth_settings(good)
    eddsa = Settings(mode="prod", auth=AuthConfig(jwt_algorithm="EdDSA"))
    with pytest.raises(ConfigError, match="JWT_PRIVATE_KEY"):
        check_auth_settings(eddsa)
    # Auth off is a choice, not a misconfiguration; dev mode makes its own secret.
    check_auth_settings(Settings(mode="prod", auth=AuthConfig(enabled=False)))
    check_auth_settings(Settings(mode="dev", data_dir=tmp_path))


def test_dev_mode_secret_is_created_once_and_private(tmp_path: Path) -> None:
    from modelserve.auth.signing import dev_secret

    first = dev_secret(tmp_path)
    assert len(first) >= 32
    assert dev_secret(tmp_path) == first
    assert (tmp_path / "jwt-secret").stat().st_mode & 0o777 == 0o600


def test_secrets_are_masked_in_settings_repr() -> None:
    config = AuthConfig(jwt_secret="Vq3x9-kZ2pL7wR4tY8uN1mB6cJ0hG5fD")
    assert "Vq3x9" not in repr(config) and "Vq3x9" not in str(config)
