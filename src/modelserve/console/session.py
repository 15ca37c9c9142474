"""Console sign-in sessions, carried in a cookie and checked by the API's own auth code.

Signing in calls `SessionService.login`, the code path of `POST /v1/auth/token` (the same
login rate limits, the same indistinguishable failures, the same audit events). The cookie
holds the session's access token, so every console request is authenticated exactly as an
API request with that token is (`AuthGuard.authenticate`: signature, claims, the session still
alive, the user still active), and a logout, a password reset or disabling the user ends the
console session too. The refresh token is not kept: a browser never holds a long-lived
credential.

Idle timeout: the token's issue time is the last activity. A page view or an action older
than `RENEW_AFTER_S` gets a new token for the same session (sliding), live-updating fragments
never do, and a token older than the idle timeout is refused and its session ended. Because
the token also expires by itself after `auth.access_token_ttl_s`, the effective idle timeout
is the smaller of the two settings.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from modelserve.auth.audit import RequestMeta
from modelserve.auth.system import AuthSystem
from modelserve.console.security import csrf_key, csrf_token
from modelserve.errors import AuthenticationError, PermissionDeniedError
from modelserve.types import Principal

# Renewing on every request would set a cookie on every response; once a minute is enough
# for an idle timeout counted in minutes.
RENEW_AFTER_S = 60


@dataclass(frozen=True, slots=True)
class Visitor:
    """A signed-in console user, for the length of one request."""

    principal: Principal
    session_id: str
    token: str
    csrf: str
    # A fresh token for the same session to set in the cookie, or None to leave it.
    renewed: str | None


@dataclass(frozen=True, slots=True)
class Resumed:
    """What a request's cookie amounted to: a visitor, or why there is none."""

    visitor: Visitor | None
    expired: bool = False


class ConsoleSessions:
    """Signs users in and out, and resumes their session from the cookie."""

    def __init__(
        self, auth: AuthSystem, *, idle_timeout_s: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._auth = auth
        self._idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._csrf_key = csrf_key(auth.codec.keys)

    @property
    def idle_timeout_s(self) -> int:
        """Seconds without activity after which a session ends (see the module docstring)."""
        return min(self._idle_timeout_s, self._auth.codec.ttl_s)

    async def sign_in(self, username: str, password: str, *, meta: RequestMeta) -> str:
        """The new session's access token; AuthenticationError or RateLimitedError as the
        API's login raises them."""
        pair = await self._auth.sessions.login(username, password, meta=meta)
        return pair.access_token

    async def sign_out(self, token: str, *, meta: RequestMeta) -> None:
        """End the session of `token` (audited as a logout)."""
        with contextlib.suppress(AuthenticationError, PermissionDeniedError):
            await self._auth.sessions.logout(token.encode("ascii"), meta=meta)

    async def resume(self, token: str | None, *, activity: bool, meta: RequestMeta) -> Resumed:
        """The visitor a session cookie stands for. `activity`: the request is the user's own
        doing (a page or an action), not a live-updating fragment."""
        if not token:
            return Resumed(None)
        codec = self._auth.codec
        try:
            claims = codec.verify(token)
        except AuthenticationError:
            return Resumed(None, expired=True)
        now = self._clock()
        last_activity = claims.expires_at - codec.ttl_s
        if now - last_activity > self._idle_timeout_s:
            await self.sign_out(token, meta=meta)
            return Resumed(None, expired=True)
        try:
            principal = await self._auth.guard.authenticate(
                [(b"authorization", b"Bearer " + token.encode("ascii"))]
            )
        except (AuthenticationError, UnicodeEncodeError):
            return Resumed(None, expired=True)
        if principal.kind != "user":
            return Resumed(None)
        renewed = None
        if activity and now - last_activity >= RENEW_AFTER_S:
            renewed = codec.issue(user_id=claims.user_id, session_id=claims.session_id)
        return Resumed(
            Visitor(
                principal=principal,
                session_id=claims.session_id,
                token=renewed or token,
                csrf=csrf_token(self._csrf_key, claims.session_id),
                renewed=renewed,
            )
        )
