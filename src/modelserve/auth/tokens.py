"""Access tokens (JWT, PyJWT) and refresh tokens (random, stored as digests).

The algorithm is fixed by settings and never read from a token's header; headers that would
point at other keys (`jku`, `x5u`, `jwk`, `x5c`, a foreign `kid`) are refused outright, and no
key is ever fetched from anywhere (S6). Every failure is the same AuthenticationError: the
caller never learns which check failed.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from modelserve.errors import AuthenticationError, ConfigError

TOKEN_TYPE = "at+jwt"  # noqa: S105 (RFC 9068: access tokens say what they are)
REQUIRED_CLAIMS = ("exp", "iat", "nbf", "iss", "aud", "sub", "jti", "sid")
FORBIDDEN_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256", "crit"})
MAX_TOKEN_BYTES = 4096
REFRESH_PREFIX = "msr_"

INVALID_CREDENTIALS = "invalid or expired credentials"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What a verified access token says: whose it is and which login session it belongs to."""

    user_id: str
    session_id: str
    token_id: str
    expires_at: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class SigningKeys:
    """The key that signs and the key that verifies (the same secret for HS256)."""

    algorithm: str
    signing: Any
    verifying: Any
    key_id: str


def hs256_keys(secret: bytes) -> SigningKeys:
    """Keys for HS256 with a shared secret."""
    return SigningKeys("HS256", secret, secret, _key_id(secret))


def eddsa_keys(private_pem: bytes) -> SigningKeys:
    """Keys for EdDSA from an Ed25519 private key in PEM."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ConfigError("EdDSA tokens need the `cryptography` package installed") from exc
    try:
        private = serialization.load_pem_private_key(private_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError("auth.jwt_private_key is not an unencrypted PEM private key") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigError("auth.jwt_private_key must be an Ed25519 key for EdDSA")
    public = private.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return SigningKeys("EdDSA", private, public, _key_id(raw))


class TokenCodec:
    """Issues and verifies access tokens with one pinned algorithm and key."""

    def __init__(
        self,
        keys: SigningKeys,
        *,
        issuer: str,
        audience: str,
        ttl_s: int,
        leeway_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s
        self.leeway_s = leeway_s
        self._clock = clock

    def issue(self, *, user_id: str, session_id: str) -> str:
        """A signed access token for one user's login session."""
        now = int(self._clock())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user_id,
            "sid": session_id,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_s,
        }
        headers = {"typ": TOKEN_TYPE, "kid": self.keys.key_id}
        return jwt.encode(claims, self.keys.signing, algorithm=self.keys.algorithm, headers=headers)

    def verify(self, token: str) -> AccessClaims:
        """The claims of a valid access token; AuthenticationError for anything else."""
        if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
            raise AuthenticationError(INVALID_CREDENTIALS)
        try:
            header = jwt.get_unverified_header(token)
            self._check_header(header)
            claims = jwt.decode(
                token,
                self.keys.verifying,
                algorithms=[self.keys.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": list(REQUIRED_CLAIMS), "strict_aud": True},
            )
            return AccessClaims(
                user_id=_text(claims["sub"]),
                session_id=_text(claims["sid"]),
                token_id=_text(claims["jti"]),
                expires_at=float(claims["exp"]),
            )
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            raise AuthenticationError(INVALID_CREDENTIALS) from exc

    def _check_header(self, header: dict[str, Any]) -> None:
        if header.get("alg") != self.keys.algorithm or header.get("typ") != TOKEN_TYPE:
            raise ValueError("unexpected token header")
        if FORBIDDEN_HEADERS.intersection(header):
            raise ValueError("token header points at a key")
        # kid is compared, never used to find a key (no paths, URLs or lookups).
        if header.get("kid") != self.keys.key_id:
            raise ValueError("unknown key id")


@dataclass(frozen=True, slots=True)
class NewRefreshToken:
    """A refresh token as handed out once (`token`) and as stored (`digest`)."""

    token: str
    digest: str


def new_refresh_token() -> NewRefreshToken:
    """A fresh random refresh token (256 bits)."""
    token = REFRESH_PREFIX + secrets.token_urlsafe(32)
    return NewRefreshToken(token, token_digest(token))


def token_digest(token: str) -> str:
    """SHA-256 of a random credential, as stored. Fine unsalted: the input has 256 bits."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _key_id(material: bytes) -> str:
    # Derived from the key so every process agrees; tells nothing usable about the secret.
    return hashlib.sha256(b"modelserve-kid:" + material).hexdigest()[:16]


def _text(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 64:
        raise ValueError("claim is not a short string")
    return value
