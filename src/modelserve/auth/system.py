"""`AuthSystem`: every auth part built once from Settings, for one server process.

auth = AuthSystem(settings, database)       # no I/O beyond reading/creating the dev secret
create_app(..., guard=auth.guard)           # the PredictGuard of the fast path
await auth.start()                          # after migrations: dev bootstrap, cleanup
await auth.close()                          # at shutdown
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from modelserve.auth.accounts import AccountService, utcnow
from modelserve.auth.apikeys import KeyService
from modelserve.auth.audit import AuditLog, AuditReader
from modelserve.auth.bootstrap import DevCredentials, announce, bootstrap_dev_credentials
from modelserve.auth.guard import AuthGuard, Network, RatePolicy, parse_networks
from modelserve.auth.passwords import PasswordHasher
from modelserve.auth.principals import Authenticator
from modelserve.auth.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from modelserve.auth.sessions import SessionService
from modelserve.auth.signing import check_auth_settings, signing_keys
from modelserve.auth.tokens import TokenCodec
from modelserve.config import Settings
from modelserve.db.engine import Database
from modelserve.db.repos import auth as repo

logger = logging.getLogger("modelserve.auth")


class AuthSystem:
    """Users, sessions, keys, rate limits and the audit log of one process."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        *,
        limiter: RateLimiter | None = None,
        login_limiter: RateLimiter | None = None,
        announce_to: Callable[[DevCredentials], None] | None = announce,
    ) -> None:
        check_auth_settings(settings)
        config = settings.auth
        self.settings = settings
        self.database = database
        self.codec = TokenCodec(
            signing_keys(settings),
            issuer=config.issuer,
            audience=config.audience,
            ttl_s=config.access_token_ttl_s,
            leeway_s=config.jwt_leeway_s,
        )
        self.hasher = PasswordHasher(
            memory_kib=config.argon2_memory_kib,
            time_cost=config.argon2_time_cost,
            concurrency=config.hashing_concurrency,
            queue=config.hashing_queue,
        )
        redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
        # Predict limits fail open when Redis is down (serving beats counting); login limits
        # fail closed (an outage must not switch off brute-force protection).
        self.limiter: RateLimiter = limiter or (
            RedisRateLimiter(redis_url, fail_open=True) if redis_url else MemoryRateLimiter()
        )
        self.login_limiter: RateLimiter = login_limiter or (
            RedisRateLimiter(redis_url, fail_open=False) if redis_url else self.limiter
        )
        self.policy = RatePolicy(config)
        self.audit = AuditLog(database)
        self.audit_reader = AuditReader(database)
        self.trusted_proxies: tuple[Network, ...] = parse_networks(config.trusted_proxies)
        self.authenticator = Authenticator(
            database=database,
            codec=self.codec,
            member_scopes=config.member_scopes,
            ttl_s=config.credential_cache_ttl_s,
        )
        self.guard = AuthGuard(
            authenticator=self.authenticator,
            limiter=self.limiter,
            policy=self.policy,
            audit=self.audit,
        )
        self.accounts = AccountService(
            database=database,
            hasher=self.hasher,
            audit=self.audit,
            authenticator=self.authenticator,
        )
        self.sessions = SessionService(
            database=database,
            hasher=self.hasher,
            codec=self.codec,
            audit=self.audit,
            authenticator=self.authenticator,
            limiter=self.login_limiter,
            policy=self.policy,
            refresh_ttl_s=config.refresh_token_ttl_s,
        )
        self.keys = KeyService(
            database=database,
            audit=self.audit,
            authenticator=self.authenticator,
            limiter=self.limiter,
            create_rules=self.policy.key_create,
            member_scopes=config.member_scopes,
        )
        self._announce = announce_to

    async def start(self) -> DevCredentials | None:
        """Run once the schema is at head: dev first-start credentials, expired-token cleanup."""
        await self.hasher.prepare()
        credentials = await bootstrap_dev_credentials(
            self.settings, database=self.database, hasher=self.hasher, audit=self.audit
        )
        if credentials is not None and self._announce is not None:
            self._announce(credentials)
        async with self.database.session() as session:
            removed = await repo.delete_dead_refresh_tokens(
                session, before=utcnow() - dt.timedelta(days=1)
            )
        if removed:
            logger.info("removed %d expired refresh tokens", removed)
        return credentials

    async def close(self) -> None:
        """Finish background audit writes and release threads and connections."""
        await self.audit.drain()
        self.hasher.close()
        await self.limiter.close()
        if self.login_limiter is not self.limiter:
            await self.login_limiter.close()
