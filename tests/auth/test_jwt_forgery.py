"""S6: forged, expired and misdirected JWTs are all 401 with WWW-Authenticate, say nothing about
which check failed, and never make the server fetch a key from anywhere."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest

from tests.auth.support import PASSWORD, SECRET, AuthClient, serving_auth, settings_for
from tests.http.services import Summer

OUTBOUND: list[tuple[str, Any]] = []
_WATCHING = False
LOOPBACK = {"127.0.0.1", "localhost", "::1", "testserver"}


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # Records every attempt to resolve or reach a host other than loopback while armed.
    if not _WATCHING:
        return
    host: Any = None
    if event == "socket.connect" and isinstance(args[1], tuple):
        host = args[1][0]  # AF_UNIX paths are local by definition
    elif event == "socket.getaddrinfo":
        host = args[0]
    elif event == "urllib.Request":
        host = urlsplit(str(args[0])).hostname
    if host is not None and str(host) not in LOOPBACK:
        OUTBOUND.append((event, host))


sys.addaudithook(_audit)


@pytest.fixture
def no_outbound() -> Iterator[list[tuple[str, Any]]]:
    global _WATCHING
    OUTBOUND.clear()
    _WATCHING = True
    try:
        yield OUTBOUND
    finally:
        _WATCHING = False


def test_the_audit_hook_sees_lookups(no_outbound: list[Any]) -> None:
    import socket

    with pytest.raises(socket.gaierror):  # .invalid never resolves (RFC 6761)
        socket.getaddrinfo("modelserve-test.invalid", 443)
    assert no_outbound == [("socket.getaddrinfo", "modelserve-test.invalid")]
    no_outbound.clear()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A JWT assembled by hand (so nothing refuses to make a bad one)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = (
        b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    )
    return f"{signing_input}.{b64(signature)}"


def forgeries(real: str) -> dict[str, Callable[[dict[str, Any], dict[str, Any]], str]]:
    """Each forgery builds a token from the genuine header and claims of `real`."""
    now = int(time.time())

    def signed(header: dict[str, Any], claims: dict[str, Any]) -> str:
        return raw_token(header, claims, SECRET.encode())

    def tampered(header: dict[str, Any], claims: dict[str, Any]) -> str:
        head, _, sig = real.split(".")
        body = b64(json.dumps({**claims, "sub": "0" * 32}).encode())
        return f"{head}.{body}.{sig}"

    def without(name: str) -> Callable[[dict[str, Any], dict[str, Any]], str]:
        return lambda h, c: signed(h, {k: v for k, v in c.items() if k != name})

    return {
        "alg none": lambda h, c: raw_token({**h, "alg": "none"}, c, None),
        "alg None": lambda h, c: raw_token({**h, "alg": "None"}, c, None),
        "wrong secret": lambda h, c: raw_token(h, c, b"another-secret-" * 4),
        "tampered payload": tampered,
        "expired beyond leeway": lambda h, c: signed(h, {**c, "exp": now - 120}),
        "nbf in the future": lambda h, c: signed(h, {**c, "nbf": now + 300}),
        "iat in the future": lambda h, c: signed(h, {**c, "iat": now + 300}),
        "missing exp": without("exp"),
        "missing sid": without("sid"),
        "wrong aud": lambda h, c: signed(h, {**c, "aud": "someone-else"}),
        "aud list with ours and another": lambda h, c: signed(h, {**c, "aud": ["modelserve", "x"]}),
        "wrong iss": lambda h, c: signed(h, {**c, "iss": "https://evil.invalid"}),
        "kid as a path": lambda h, c: signed({**h, "kid": "../../../../dev/null"}, c),
        "kid as a URL": lambda h, c: signed({**h, "kid": "https://evil.invalid/key"}, c),
        "jku header": lambda h, c: signed({**h, "jku": "https://evil.invalid/jwks.json"}, c),
        "x5u header": lambda h, c: signed({**h, "x5u": "https://evil.invalid/cert.pem"}, c),
        "jwk header": lambda h, c: signed({**h, "jwk": {"kty": "oct", "k": b64(b"k" * 32)}}, c),
        "typ not an access token": lambda h, c: signed({**h, "typ": "JWT"}, c),
        "unknown session": lambda h, c: signed(h, {**c, "sid": "f" * 32}),
    }


@pytest.fixture
def session(lite: AuthClient) -> tuple[AuthClient, str, dict[str, Any]]:
    _, name = lite.new_user()
    tokens = lite.login(name)
    return lite, tokens["access_token"], tokens


def test_forgeries_are_all_the_same_401(
    session: tuple[AuthClient, str, dict[str, Any]], no_outbound: list[Any]
) -> None:
    api, real, _ = session
    header = jwt.get_unverified_header(real)
    claims = jwt.decode(real, options={"verify_signature": False})
    assert (
        api.client.get("/v1/auth/me", headers={"authorization": f"Bearer {real}"}).status_code
        == 200
    )
    bodies = set()
    for name, forge in forgeries(real).items():
        token = forge(header, claims)
        for path, method in (("/v1/auth/me", "GET"), ("/v1/models/summer/predict", "POST")):
            response = api.client.request(
                method, path, json={"values": [1]}, headers={"authorization": f"Bearer {token}"}
            )
            assert response.status_code == 401, (name, path, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer"), name
            error = response.json()["error"]
            bodies.add((error["code"], error["message"], json.dumps(error["details"])))
    assert len(bodies) == 1, f"401s differ, so they tell which check failed: {bodies}"
    assert no_outbound == []


def test_refresh_token_is_not_an_access_token(
    session: tuple[AuthClient, str, dict[str, Any]],
) -> None:
    api, _, tokens = session
    response = api.client.get(
        "/v1/auth/me", headers={"authorization": f"Bearer {tokens['refresh_token']}"}
    )
    assert response.status_code == 401


def test_token_of_deleted_or_disabled_user(lite: AuthClient) -> None:
    _, admin = lite.user_headers("admin")
    for change in ("disable", "delete"):
        user_id, name = lite.new_user()
        headers = {"authorization": f"Bearer {lite.login(name)['access_token']}"}
        if change == "disable":
            lite.client.patch(f"/v1/users/{user_id}", json={"is_active": False}, headers=admin)
        else:
            lite.client.delete(f"/v1/users/{user_id}", headers=admin)
        assert lite.client.get("/v1/auth/me", headers=headers).status_code == 401, change


def test_token_issued_before_logout_or_password_change(lite: AuthClient) -> None:
    _, name = lite.new_user()
    first = {"authorization": f"Bearer {lite.login(name)['access_token']}"}
    second = {"authorization": f"Bearer {lite.login(name)['access_token']}"}
    lite.client.post("/v1/auth/logout", headers=first)
    assert lite.client.get("/v1/auth/me", headers=first).status_code == 401
    assert lite.client.get("/v1/auth/me", headers=second).status_code == 200
    lite.client.post(
        "/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "another long passphrase"},
        headers=second,
    )
    assert lite.client.get("/v1/auth/me", headers=second).status_code == 401


def test_eddsa_tokens_and_hs256_signed_with_the_public_key(
    sqlite_url: str, tmp_path: Path, no_outbound: list[Any]
) -> None:
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings = settings_for(
        sqlite_url, tmp_path, jwt_algorithm="EdDSA", jwt_private_key=pem, jwt_secret=None
    )
    with serving_auth(settings, [Summer]) as api:
        _, name = api.new_user()
        real = api.login(name)["access_token"]
        assert jwt.get_unverified_header(real)["alg"] == "EdDSA"
        assert (
            api.client.get("/v1/auth/me", headers={"authorization": f"Bearer {real}"}).status_code
            == 200
        )
        header = {**jwt.get_unverified_header(real), "alg": "HS256"}
        claims = jwt.decode(real, options={"verify_signature": False})
        confused = raw_token(header, claims, public_pem)
        response = api.client.get("/v1/auth/me", headers={"authorization": f"Bearer {confused}"})
        assert response.status_code == 401
    assert no_outbound == []
