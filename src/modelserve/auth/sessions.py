"""Login sessions: password login, refresh-token rotation, logout.

A login opens a session: a short-lived access token (JWT) plus a refresh token stored as a
digest. Refreshing rotates the refresh token; presenting a rotated one again means it was
copied, so the whole session is revoked (reuse detection). Access tokens are honoured only
while their session is alive, so logout takes effect on the next request (S7).

Failed logins are indistinguishable (S5): an unknown user, a wrong password and a disabled
user give the same error after the same amount of hashing work. Attempts are limited per
account and client address, and per client address over all accounts (S4).
"""

from __future__ import annotations

import datetime as dt

from modelserve.auth.accounts import new_id, utcnow
from modelserve.auth.audit import AuditEvent, AuditLog, Outcome, RequestMeta
from modelserve.auth.guard import RatePolicy
from modelserve.auth.passwords import PasswordHasher, normalize_name
from modelserve.auth.principals import Authenticator
from modelserve.auth.ratelimit import RateLimiter
from modelserve.auth.tokens import TokenCodec, new_refresh_token, token_digest
from modelserve.db.engine import Database
from modelserve.db.repos import auth as repo
from modelserve.db.tables.auth import RefreshTokenRow
from modelserve.errors import AuthenticationError, PermissionDeniedError, RateLimitedError
from modelserve.schemas.auth import TokenPair

LOGIN_FAILED = "invalid username or password"
SESSION_INVALID = "invalid or expired credentials"
MAX_PASSWORD_INPUT = 1024  # anything longer cannot be a valid password (max 128 characters)


class SessionService:
    """Logs users in and out."""

    def __init__(
        self,
        *,
        database: Database,
        hasher: PasswordHasher,
        codec: TokenCodec,
        audit: AuditLog,
        authenticator: Authenticator,
        limiter: RateLimiter,
        policy: RatePolicy,
        refresh_ttl_s: int,
    ) -> None:
        self._database = database
        self._hasher = hasher
        self._codec = codec
        self._audit = audit
        self._authenticator = authenticator
        self._limiter = limiter
        self._policy = policy
        self._refresh_ttl = dt.timedelta(seconds=refresh_ttl_s)

    async def login(self, username: str, password: str, *, meta: RequestMeta) -> TokenPair:
        """Check a username and password; a new session's tokens, or AuthenticationError."""
        name = normalize_name(username)[:64]
        address = meta.client_ip or "unknown"
        try:
            await self._limiter.hit(f"login-ip|{address}", self._policy.login_ip)
            await self._limiter.hit(f"login|{name}|{address}", self._policy.login)
        except RateLimitedError:
            await self._audit.record_detached(
                AuditEvent.LOGIN_LIMITED, actor=None, meta=meta, outcome=Outcome.DENIED
            )
            raise
        user = None
        if "\x00" not in name:  # no such username can exist, and PostgreSQL refuses NUL
            async with self._database.session() as session:
                user = await repo.get_user_by_username(session, username=name)
        if user is None:
            await self._hasher.verify_dummy(password[:MAX_PASSWORD_INPUT])
            matches, new_hash = False, None
        else:
            matches, new_hash = await self._hasher.verify(
                password[:MAX_PASSWORD_INPUT], user.password_hash
            )
        if user is None or not matches or not user.is_active or len(password) > 128:
            # Only a known account is named: an unknown "username" may be a mistyped password.
            await self._audit.record_detached(
                AuditEvent.LOGIN_FAILED,
                actor=None,
                meta=meta,
                outcome=Outcome.FAILURE,
                target_type="user" if user is not None else None,
                target_id=user.id if user is not None else None,
            )
            raise AuthenticationError(LOGIN_FAILED)
        await self._limiter.reset(f"login|{name}|{address}", self._policy.login)
        session_id = new_id()
        refresh = new_refresh_token()
        now = utcnow()
        async with self._database.session() as session:
            await repo.add_refresh_token(
                session, row=self._refresh_row(session_id, user.id, refresh.digest, now)
            )
            if new_hash is not None:
                # Stored with older Argon2 costs: upgrade it now that we know the password.
                fresh = await repo.get_user(session, user_id=user.id)
                if fresh is not None:
                    fresh.password_hash = new_hash
            await self._audit.record(
                session,
                AuditEvent.LOGIN_SUCCEEDED,
                actor=None,
                meta=meta,
                target_type="user",
                target_id=user.id,
            )
        return self._pair(user.id, session_id, refresh.token)

    async def refresh(self, refresh_token: str, *, meta: RequestMeta) -> TokenPair:
        """A new token pair for a live refresh token, which stops working."""
        now = utcnow()
        reused_session: str | None = None
        result: tuple[str, str, str] | None = None
        async with self._database.session() as session:
            row = await repo.get_refresh_token(session, digest=token_digest(refresh_token))
            if row is not None and row.revoked_at is None:
                expires_at = repo.aware(row.expires_at)
                if row.rotated_at is not None or not await repo.rotate_refresh_token(
                    session, token_id=row.id, now=now
                ):
                    reused_session = row.session_id
                    await repo.revoke_session(session, session_id=row.session_id, now=now)
                elif expires_at is not None and expires_at > now:
                    user = await repo.get_user(session, user_id=row.user_id)
                    if user is not None and user.is_active:
                        fresh = new_refresh_token()
                        await repo.add_refresh_token(
                            session,
                            row=self._refresh_row(row.session_id, user.id, fresh.digest, now),
                        )
                        await self._audit.record(
                            session,
                            AuditEvent.TOKEN_REFRESHED,
                            actor=None,
                            meta=meta,
                            target_type="user",
                            target_id=user.id,
                        )
                        result = (user.id, row.session_id, fresh.token)
        if reused_session is not None:
            self._authenticator.forget_all()
            await self._audit.record_detached(
                AuditEvent.REFRESH_REUSED,
                actor=None,
                meta=meta,
                outcome=Outcome.DENIED,
                details={"session_id": reused_session},
            )
        if result is None:
            raise AuthenticationError(SESSION_INVALID)
        return self._pair(*result)

    async def logout(self, credential: bytes, *, meta: RequestMeta) -> None:
        """End the session of an access token (its refresh token stops working too)."""
        try:
            claims = self._codec.verify(credential.decode("ascii"))
        except (AuthenticationError, UnicodeDecodeError):
            raise PermissionDeniedError(
                "log out with the access token of a login session; revoke API keys instead"
            ) from None
        async with self._database.session() as session:
            await repo.revoke_session(session, session_id=claims.session_id, now=utcnow())
            await self._audit.record(
                session,
                AuditEvent.LOGOUT,
                actor=None,
                meta=meta,
                target_type="user",
                target_id=claims.user_id,
            )
        self._authenticator.forget_all()

    def _refresh_row(
        self, session_id: str, user_id: str, digest: str, now: dt.datetime
    ) -> RefreshTokenRow:
        return RefreshTokenRow(
            id=new_id(),
            session_id=session_id,
            user_id=user_id,
            digest=digest,
            created_at=now,
            expires_at=now + self._refresh_ttl,
        )

    def _pair(self, user_id: str, session_id: str, refresh_token: str) -> TokenPair:
        return TokenPair(
            access_token=self._codec.issue(user_id=user_id, session_id=session_id),
            expires_in=self._codec.ttl_s,
            refresh_token=refresh_token,
            refresh_expires_in=int(self._refresh_ttl.total_seconds()),
        )
