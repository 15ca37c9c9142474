"""The console's web-security rules: response headers, cookies and CSRF tokens (S13).

* Every console response carries a strict Content-Security-Policy (this origin only, no inline
  script or style, `frame-ancestors 'none'`), `X-Frame-Options: DENY`, `nosniff`, a same-origin
  referrer policy and `Cache-Control: no-store` (pages show keys and the audit log).
* The session cookie is `HttpOnly; SameSite=Strict` and, outside dev mode, `Secure` with the
  `__Host-` prefix (so no subdomain can plant or scope it); docs/console.md says why Strict works
  for every flow here.
* CSRF: a synchronizer token per login session, `HMAC(key, session id)`. It is checked on every
  state-changing request (form field `csrf_token` or header `X-CSRF-Token`); a missing or wrong
  token is 403. The key is derived from the token-signing key, so every worker and node of one
  deployment agrees without storing anything, and a session id seen elsewhere (the audit log
  names some) does not give the token away. The sign-in form, which has no session yet, uses a
  double-submit token in a short-lived cookie of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelserve.auth.tokens import SigningKeys

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_COOKIE = "modelserve-console"
LOGIN_COOKIE = "modelserve-console-login"
HOST_PREFIX = "__Host-"
LOGIN_COOKIE_MAX_AGE_S = 15 * 60


def _policy(*directives: str) -> str:
    return "; ".join(directives)


# Nothing but this origin. No inline code or styles: htmx's own indicator <style> is switched
# off by its config meta tag, and uPlot sizes its canvas through the DOM (element.style), which
# style-src does not govern (checked in Chromium by tests/console/test_browser.py).
CONSOLE_CSP = _policy(
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "object-src 'none'",
)
PAGE_HEADERS: Mapping[str, str] = {
    "content-security-policy": CONSOLE_CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
    # Pages hold keys shown once, users and the audit log: never kept by a cache or back button.
    "cache-control": "no-store",
}


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    """Names and attributes of the console's cookies, fixed by the deployment's settings."""

    secure: bool
    mount: str

    @property
    def session_name(self) -> str:
        """The session cookie's name (`__Host-` prefixed when Secure)."""
        return HOST_PREFIX + SESSION_COOKIE if self.secure else SESSION_COOKIE

    @property
    def login_name(self) -> str:
        """The sign-in form's double-submit cookie's name."""
        return HOST_PREFIX + LOGIN_COOKIE if self.secure else LOGIN_COOKIE

    @property
    def path(self) -> str:
        # `__Host-` cookies must be Path=/; a plain one is kept to the console's pages.
        return "/" if self.secure else self.mount

    def removal(self) -> dict[str, Any]:
        """Keyword arguments for Starlette's `Response.delete_cookie` (the same scope)."""
        return {"path": self.path, "secure": self.secure, "httponly": True, "samesite": "strict"}

    def attributes(self, max_age: int | None) -> dict[str, Any]:
        """Keyword arguments for Starlette's `Response.set_cookie`."""
        return {
            "max_age": max_age,
            "path": self.path,
            "secure": self.secure,
            "httponly": True,
            "samesite": "strict",
        }


def csrf_key(keys: SigningKeys) -> bytes:
    """The CSRF key of a deployment, derived from its token-signing key (never the key itself)."""
    material = keys.signing
    if not isinstance(material, bytes):
        # EdDSA: the Ed25519 private key's raw bytes.
        from cryptography.hazmat.primitives import serialization

        material = material.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    return hmac.new(material, b"modelserve console csrf v1", hashlib.sha256).digest()


def csrf_token(key: bytes, session_id: str) -> str:
    """The synchronizer token of one login session."""
    return hmac.new(key, b"session:" + session_id.encode(), hashlib.sha256).hexdigest()


def csrf_matches(expected: str, presented: str | None) -> bool:
    """Constant-time comparison; False for a missing token."""
    return presented is not None and hmac.compare_digest(expected, presented)


def new_login_token() -> str:
    """A random double-submit token for the sign-in form."""
    return secrets.token_urlsafe(32)


def cross_site(headers: Mapping[str, str]) -> bool:
    """True when the browser says the request comes from another site (Fetch Metadata).

    Defence in depth next to the token and SameSite: browsers that send `Sec-Fetch-Site`
    mark a form posted from another site `cross-site`; requests without it are judged by the
    token alone.
    """
    return headers.get("sec-fetch-site", "").lower() == "cross-site"
