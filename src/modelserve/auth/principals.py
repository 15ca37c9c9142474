"""Credential -> Principal, with a short per-process cache so the hot path skips the database.

A presented credential (API key or access token) is looked up once, then its Principal is kept
for `ttl_s` (at most 1 s), keyed by the SHA-256 of the credential: a revoked key, a logged-out
session or a disabled user is refused by every process within that time (S7). Concurrent
misses for the same credential share one lookup. Failures are never cached, and all of them
raise the same AuthenticationError.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
from collections.abc import Callable, Iterable

from modelserve.auth.keys import (
    ADMIN_SCOPE,
    covers,
    digest_matches,
    key_digest,
    key_prefix,
    looks_like_key,
    split_scopes,
)
from modelserve.auth.tokens import INVALID_CREDENTIALS, TokenCodec
from modelserve.db.engine import Database
from modelserve.db.repos import auth as repo
from modelserve.db.repos.auth import aware
from modelserve.db.tables.auth import UserRow
from modelserve.errors import AuthenticationError
from modelserve.types import Principal

MAX_CACHED = 10_000
# last_used_at is written at most this often per key, so busy keys do not write per request.
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)


def role_scopes(role: str, member_scopes: Iterable[str]) -> frozenset[str]:
    """What a user's login session may do."""
    return frozenset({ADMIN_SCOPE}) if role == "admin" else frozenset(member_scopes)


def user_principal(user: UserRow, member_scopes: Iterable[str]) -> Principal:
    """The Principal of a logged-in user."""
    return Principal(
        kind="user",
        subject=user.id,
        owner_id=user.id,
        role="admin" if user.role == "admin" else "member",
        scopes=role_scopes(user.role, member_scopes),
        rate_key=f"user:{user.id}",
    )


class Authenticator:
    """Resolves API keys and access tokens to Principals."""

    def __init__(
        self,
        *,
        database: Database,
        codec: TokenCodec,
        member_scopes: Iterable[str],
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._database = database
        self._codec = codec
        self._member_scopes = frozenset(member_scopes)
        self._ttl_s = ttl_s
        self._clock = clock
        self._wall = wall_clock
        self._cache: dict[bytes, tuple[Principal, float]] = {}
        self._inflight: dict[bytes, asyncio.Task[tuple[Principal, float]]] = {}

    def cached(self, credential: bytes) -> Principal | None:
        """The cached Principal of a credential still fresh, else None (no I/O, no await)."""
        entry = self._cache.get(hashlib.sha256(credential).digest())
        if entry is not None and entry[1] > self._clock():
            return entry[0]
        return None

    async def authenticate(self, credential: bytes) -> Principal:
        """The Principal of an API key or access token; AuthenticationError otherwise."""
        digest = hashlib.sha256(credential).digest()
        entry = self._cache.get(digest)
        if entry is not None and entry[1] > self._clock():
            return entry[0]
        task = self._inflight.get(digest)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._resolve(credential))
            self._inflight[digest] = task
            task.add_done_callback(lambda t: self._settle(digest, t))
        # Shielded: one caller giving up must not cancel the lookup the others wait for.
        principal, _ = await asyncio.shield(task)
        return principal

    def forget_all(self) -> None:
        """Drop every cached Principal (this process saw a revocation: make it immediate)."""
        self._cache.clear()

    def _settle(self, digest: bytes, task: asyncio.Task[tuple[Principal, float]]) -> None:
        self._inflight.pop(digest, None)
        if task.cancelled() or task.exception() is not None or self._ttl_s <= 0:
            return
        principal, valid_until = task.result()
        now = self._clock()
        expires = min(now + self._ttl_s, now + (valid_until - self._wall()))
        if len(self._cache) >= MAX_CACHED:
            self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
        self._cache[digest] = (principal, expires)

    async def _resolve(self, raw: bytes) -> tuple[Principal, float]:
        try:
            credential = raw.decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationError(INVALID_CREDENTIALS) from None
        if looks_like_key(credential):
            return await self._resolve_key(credential)
        return await self._resolve_token(credential)

    async def _resolve_key(self, key: str) -> tuple[Principal, float]:
        prefix = key_prefix(key)
        if prefix is None:
            raise AuthenticationError(INVALID_CREDENTIALS)
        now = dt.datetime.now(dt.UTC)
        async with self._database.session() as session:
            found = await repo.get_key_and_owner(session, prefix=prefix)
            if found is None:
                raise AuthenticationError(INVALID_CREDENTIALS)
            row, owner = found
            expires_at = aware(row.expires_at)
            if (
                not digest_matches(row.digest, key_digest(key))
                or row.revoked_at is not None
                or (expires_at is not None and expires_at <= now)
                or not owner.is_active
            ):
                raise AuthenticationError(INVALID_CREDENTIALS)
            last_used = aware(row.last_used_at)
            if last_used is None or now - last_used >= LAST_USED_RESOLUTION:
                await repo.touch_key(session, key_id=row.id, now=now)
        held = role_scopes(owner.role, self._member_scopes)
        # A key never does more than its owner may do now (a demoted admin's keys shrink too).
        scopes = frozenset(s for s in split_scopes(row.scopes) if covers(held, s))
        principal = Principal(
            kind="api_key",
            subject=row.id,
            owner_id=owner.id,
            role="admin" if owner.role == "admin" else "member",
            scopes=scopes,
            rate_key=f"key:{row.id}",
        )
        valid_until = expires_at.timestamp() if expires_at is not None else float("inf")
        return principal, valid_until

    async def _resolve_token(self, token: str) -> tuple[Principal, float]:
        claims = self._codec.verify(token)
        now = dt.datetime.now(dt.UTC)
        async with self._database.session() as session:
            user = await repo.get_session_user(
                session, session_id=claims.session_id, user_id=claims.user_id, now=now
            )
        if user is None or not user.is_active:
            raise AuthenticationError(INVALID_CREDENTIALS)
        return user_principal(user, self._member_scopes), claims.expires_at
