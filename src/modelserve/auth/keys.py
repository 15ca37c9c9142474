"""API keys: their format, their scopes, and how they are stored.

A key reads `ms_<prefix>_<secret>`: the prefix (12 hex digits) is public and finds the row, the
secret (256 random bits) proves possession. Only the prefix and the SHA-256 digest of the whole
key are stored (S9); the key itself is shown once, at creation. Digests are compared with
`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from modelserve.errors import InvalidInputError

KEY_MARK = "ms_"
PREFIX_HEX = 12
_KEY = re.compile(r"^ms_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")

ADMIN_SCOPE = "admin"
FIXED_SCOPES = frozenset(
    {"predict:*", "registry:read", "registry:write", "jobs:read", "jobs:write", ADMIN_SCOPE}
)
# predict:<model>: model names as the registry accepts them.
_MODEL_SCOPE = re.compile(r"^predict:[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_SCOPES = 32


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key: `key` is shown once, `prefix` and `digest` are stored."""

    key: str
    prefix: str
    digest: str


def generate_key() -> NewKey:
    """A new random API key."""
    prefix = secrets.token_hex(PREFIX_HEX // 2)
    key = f"{KEY_MARK}{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(key, prefix, key_digest(key))


def key_digest(key: str) -> str:
    """SHA-256 (hex) of a whole key, as stored."""
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def key_prefix(key: str) -> str | None:
    """The public prefix of a well-formed key, else None."""
    match = _KEY.match(key)
    return match.group(1) if match else None


def looks_like_key(credential: str) -> bool:
    """True when a bearer credential is meant as an API key rather than a JWT."""
    return credential.startswith(KEY_MARK)


def digest_matches(stored: str, presented: str) -> bool:
    """Constant-time comparison of two digests."""
    return hmac.compare_digest(stored.encode("ascii"), presented.encode("ascii"))


def parse_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """Validated scopes; InvalidInputError naming the first unknown one."""
    result = frozenset(scopes)
    if not result:
        raise InvalidInputError("a key needs at least one scope")
    if len(result) > MAX_SCOPES:
        raise InvalidInputError(f"a key may have at most {MAX_SCOPES} scopes")
    for scope in sorted(result):
        if scope not in FIXED_SCOPES and not _MODEL_SCOPE.match(scope):
            raise InvalidInputError(
                f"unknown scope {scope[:80]!r}",
                details={
                    "allowed": [*sorted(FIXED_SCOPES), "predict:<model>"],
                },
            )
    return result


def join_scopes(scopes: Iterable[str]) -> str:
    """Scopes as stored: sorted, space-separated."""
    return " ".join(sorted(scopes))


def split_scopes(stored: str) -> frozenset[str]:
    """Scopes as read back from storage."""
    return frozenset(stored.split())


def covers(granted: frozenset[str], scope: str) -> bool:
    """True when `granted` allows `scope` (same rule as `Principal.has_scope`)."""
    if ADMIN_SCOPE in granted or scope in granted:
        return True
    family, _, _ = scope.partition(":")
    return f"{family}:*" in granted
