"""The redaction step every sink shares (S8, S14): keys, credential shapes, known secrets."""

from __future__ import annotations

import jwt
import pytest

from modelserve.observability.redaction import REDACTED, Redactor

API_KEY = "ms_0123456789ab_" + "S" * 43
TOKEN = jwt.encode({"sub": "u1", "scope": "admin"}, "k" * 32, algorithm="HS256")


@pytest.fixture
def redactor() -> Redactor:
    return Redactor()


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {TOKEN}",
        f"authorization=Bearer%20{API_KEY}",
        f"GET /v1/models?api_key={API_KEY}&x=1 HTTP/1.1",
        f"GET /v1/models?token={TOKEN}",
        f"refused key {API_KEY} for model iris",
        f"jwt was {TOKEN}.",
        'login body {"username": "bob", "password": "hunter2-hunter2"}',
        "password=hunter2-hunter2&user=bob",
        "Basic Ym9iOmh1bnRlcjItaHVudGVyMg==",
        "postgresql://app:db-pass-123@db.internal:5432/modelserve",
    ],
)
def test_credential_shapes_in_text_are_replaced(redactor: Redactor, text: str) -> None:
    scrubbed = redactor.text(text)
    for secret in (API_KEY, TOKEN, "hunter2-hunter2", "Ym9iOmh1bnRlcjItaHVudGVyMg", "db-pass-123"):
        assert secret not in scrubbed
    assert REDACTED in scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "/v1/models/{name}/predict",
        "5fc694bf7402d0960000000000000001",
        "model 'iris' version 3 ready on cpu (1 replica(s), 0.01s)",
        "Running upgrade 0003 -> 0004, Auth: users, API keys, refresh tokens",
    ],
)
def test_ordinary_text_is_left_alone(redactor: Redactor, text: str) -> None:
    assert redactor.text(text) == text


def test_sensitive_keys_lose_their_values_at_any_depth(redactor: Redactor) -> None:
    event = {
        "Authorization": "whatever",
        "headers": {"cookie": "a=b", "x-api-key": API_KEY, "accept": "json"},
        "items": [{"password": "p"}, {"client_secret": "s"}],
        "key_id": "0123456789ab",  # an id, not a credential
        "tokens_used": None,  # nothing to hide
    }
    scrubbed = redactor.mapping(event)
    assert scrubbed == {
        "Authorization": REDACTED,
        "headers": {"cookie": REDACTED, "x-api-key": REDACTED, "accept": "json"},
        "items": [{"password": REDACTED}, {"client_secret": REDACTED}],
        "key_id": "0123456789ab",
        "tokens_used": None,
    }
    assert event["Authorization"] == "whatever"  # a copy: the caller's data is untouched


def test_registered_secrets_are_replaced_whatever_their_shape(redactor: Redactor) -> None:
    redactor.register_secret("correct horse battery staple")
    redactor.register_secret("abc")  # too short to be a secret: ignored, or every 'abc' goes
    assert redactor.text("pw was correct horse battery staple!") == f"pw was {REDACTED}!"
    assert redactor.text("abc") == "abc"
    assert redactor.value(b"correct horse battery staple") == REDACTED


def test_registered_patterns_extend_the_shapes(redactor: Redactor) -> None:
    redactor.register_pattern(r"sk-live-[a-z0-9]{8}", screen="sk-live-")
    assert redactor.text("charged with sk-live-abcd1234") == f"charged with {REDACTED}"


def test_deep_nesting_is_bounded(redactor: Redactor) -> None:
    nested: object = "x"
    for _ in range(100):
        nested = [nested]
    redactor.value(nested)  # no RecursionError
