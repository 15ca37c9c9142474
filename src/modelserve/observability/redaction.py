"""One redaction step for every telemetry sink: logs, spans, Sentry events (S8, S14).

Three nets, applied to keys and string values alike:

1. **Sensitive keys.** A mapping entry whose key names a credential (`password`, `api_key`,
   `authorization`, `token`, `cookie`, `secret`, ...) keeps its key and loses its value.
2. **Credential shapes in text.** `Bearer ...`/`Basic ...` values, JWTs, modelserve API keys,
   `key=value` pairs with a sensitive key (query strings, form bodies, JSON fragments), passwords
   in URLs, and any shape registered with `register_pattern`.
3. **Known secrets.** Values registered at start with `register_secret` (the JWT secret, database
   and Redis passwords, the Sentry DSN) are replaced wherever they appear, whatever the shape.

Redaction is a last line of defence: code still must not log secrets on purpose.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[REDACTED]"

# Substrings of a normalized key (lowercase, '-' -> '_') that make its value secret.
SENSITIVE_KEY_PARTS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "credential",
    "private_key",
    "jwt",
    "signature",
    "session",
    "dsn",
)
# Whole keys that are secret although short or generic.
SENSITIVE_KEYS = frozenset({"key", "auth", "pwd", "sig", "x_api_key", "proxy_authorization"})

# Key names that, before `=` or `:`, introduce a secret in free text (query strings, forms).
_KV_NAMES = (
    r"api[_-]?key|apikey|access[_-]?token|refresh[_-]?token|id[_-]?token|token|password|passwd"
    r"|pwd|secret|client[_-]?secret|key|auth|authorization|jwt|signature|sig|session"
)
# Before a bare `name: value` (prose, YAML), only names that cannot be anything but a secret:
# "Auth: users, API keys" in a migration's title is not a credential.
_STRONG_NAMES = (
    r"api[_-]?key|apikey|access[_-]?token|refresh[_-]?token|password|passwd|client[_-]?secret"
)
_VALUE = r"([^&\s\"',;})]+)"
BASE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization-style values: "Bearer <token>", "Basic <base64>".
    (re.compile(r"(?i)\b(bearer|basic|digest|negotiate)(\s+)[A-Za-z0-9._~+/=-]{6,}"), r"\1\2"),
    # JWTs anywhere (three base64url parts, the first always starts with '{"' -> "eyJ").
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), ""),
    # key=value (query strings, forms, env) with a sensitive key.
    (re.compile(r"(?i)((?:^|[?&;,\s\"'{(])(?:" + _KV_NAMES + r")\s*=\s*[\"']?)" + _VALUE), r"\1"),
    # "key": "value" / 'key': 'value' (JSON, dict reprs) with a sensitive key.
    (
        re.compile(r"(?i)([\"'](?:" + _KV_NAMES + r")[\"']\s*:\s*[\"']?)" + _VALUE),
        r"\1",
    ),
    # key: value for the unambiguous names.
    (re.compile(r"(?i)((?:^|[\s{(,;])(?:" + _STRONG_NAMES + r"):\s*)" + _VALUE), r"\1"),
    # modelserve API keys (`ms_<12 hex>_<secret>`, see auth/keys.py), wherever they appear.
    (re.compile(r"ms_[0-9a-f]{12}_[A-Za-z0-9_-]{8,}"), ""),
    # Passwords in URLs: scheme://user:password@host.
    (re.compile(r"(://[^/\s:@]+:)([^/\s@]+)(?=@)"), r"\1"),
)
# Cheap screen: every shape above needs one of these (whitespace, '=' or ':', '@', a JWT's
# "eyJ", an API key's "ms_"), so strings without any (request ids, route templates, model
# names) skip the substitutions; a plain character class keeps the scan itself cheap.
_SCREEN = re.compile(r"[=:\s@]|eyJ|ms_")

_MIN_SECRET_LEN = 6
_MAX_DEPTH = 12


class Redactor:
    """Scrubs secrets from text and nested data; thread-safe, shared by every sink."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (pattern, replacement): the groups a pattern keeps, then the marker.
        self._patterns: list[tuple[re.Pattern[str], str]] = [
            (pattern, keep + REDACTED) for pattern, keep in BASE_PATTERNS
        ]
        self._screen: re.Pattern[str] = _SCREEN
        self._extra_screens: list[str] = []
        self._secrets: tuple[str, ...] = ()
        self._key_verdicts: dict[str, bool] = {}

    # -- registration (at start) -----------------------------------------------------------

    def register_secret(self, value: str | None) -> None:
        """Replace this exact value wherever it appears (ignored when too short to be one)."""
        if value is None or len(value) < _MIN_SECRET_LEN:
            return
        with self._lock:
            if value not in self._secrets:
                # Longest first, so a secret that contains another is replaced whole.
                self._secrets = tuple(sorted({*self._secrets, value}, key=len, reverse=True))

    def register_pattern(self, pattern: str, *, screen: str) -> None:
        """Also redact matches of `pattern`; `screen` is a literal every match contains."""
        compiled = re.compile(pattern)
        with self._lock:
            self._patterns.append((compiled, REDACTED))
            self._extra_screens.append(re.escape(screen))
            self._screen = re.compile(_SCREEN.pattern + "|" + "|".join(self._extra_screens))

    # -- scrubbing ------------------------------------------------------------------------

    def is_sensitive_key(self, key: str) -> bool:
        """True if values under this key are credentials."""
        verdict = self._key_verdicts.get(key)
        if verdict is None:
            normalized = key.lower().replace("-", "_")
            verdict = normalized in SENSITIVE_KEYS or any(
                part in normalized for part in SENSITIVE_KEY_PARTS
            )
            if len(self._key_verdicts) < 4096:  # bounded: keys can come from clients
                self._key_verdicts[key] = verdict
        return verdict

    @property
    def has_secrets(self) -> bool:
        """True once any literal secret is registered."""
        return bool(self._secrets)

    def suspicious(self, value: str) -> bool:
        """False when `value` certainly holds no credential shape and no known secret."""
        return bool(self._secrets) or self._screen.search(value) is not None

    def text(self, value: str) -> str:
        """`value` with every credential shape and known secret replaced."""
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        if self._screen.search(value) is None:
            return value
        for pattern, replacement in self._patterns:
            value = pattern.sub(replacement, value)
        return value

    def value(self, value: Any, _depth: int = 0) -> Any:
        """A scrubbed copy of nested data (dicts, lists, tuples, strings, bytes)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes | bytearray):
            return self.text(bytes(value).decode("utf-8", "replace"))
        if _depth >= _MAX_DEPTH:
            return value if isinstance(value, int | float | bool | None) else REDACTED
        if isinstance(value, Mapping):
            return self.mapping(value, _depth + 1)
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(v, _depth + 1) for v in value]
        return value

    def mapping(self, data: Mapping[Any, Any], _depth: int = 0) -> dict[Any, Any]:
        """A scrubbed copy of a mapping: sensitive keys lose their values, the rest is scrubbed."""
        # Every log line passes here, so the common cases (known key, short plain string,
        # number) are handled inline without further calls.
        verdicts = self._key_verdicts
        screen = self._screen.search
        secrets = self._secrets
        out: dict[Any, Any] = {}
        for key, item in data.items():
            sensitive = verdicts.get(key)
            if sensitive is None:
                sensitive = isinstance(key, str) and self.is_sensitive_key(key)
            kind = type(item)
            if sensitive and item is not None and item != "":
                out[key] = REDACTED
            elif kind is str:
                out[key] = self.text(item) if secrets or screen(item) else item
            elif kind is int or kind is float or kind is bool or item is None:
                out[key] = item
            else:
                out[key] = self.value(item, _depth)
        return out

    def pairs(self, items: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
        """Scrub a list of (name, value) pairs such as headers."""
        return [(k, REDACTED if self.is_sensitive_key(k) else self.value(v)) for k, v in items]


redactor = Redactor()
"""The process-wide redactor every sink uses."""


def register_secret(value: str | None) -> None:
    """Register a known secret with the process-wide redactor."""
    redactor.register_secret(value)


def register_pattern(pattern: str, *, screen: str) -> None:
    """Register a credential shape (e.g. the API key format) with the process-wide redactor."""
    redactor.register_pattern(pattern, screen=screen)


def redact_text(value: str) -> str:
    """Scrub one string with the process-wide redactor."""
    return redactor.text(value)


def redact(value: Any) -> Any:
    """Scrub nested data with the process-wide redactor."""
    return redactor.value(value)
