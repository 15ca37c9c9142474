"""`Database`: one async engine and session factory per process, for SQLite or PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from modelserve.errors import ConfigError, DatabaseUnavailableError

logger = logging.getLogger("modelserve.db")


def async_url(url: str) -> str:
    """Pick the async driver: aiosqlite for SQLite, psycopg 3 for PostgreSQL."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise ConfigError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def redacted(url: str) -> str:
    """The URL with its password hidden, for logs and errors."""
    return make_url(url).render_as_string(hide_password=True)


class Database:
    """Engine and sessions. Routes and services receive sessions; only this class makes them."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 5) -> None:
        self.url = url
        self.backend = make_url(url).get_backend_name()
        options: dict[str, Any] = {"echo": echo}
        if self.backend == "postgresql":
            # pre-ping: connections dropped by a database restart are replaced, not handed
            # out (R10); a short connect timeout keeps requests from hanging on an outage.
            options.update(
                pool_pre_ping=True,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_timeout=5,
                connect_args={"connect_timeout": 5},
            )
        else:
            options["connect_args"] = {"timeout": 15}
        self.engine: AsyncEngine = create_async_engine(async_url(url), **options)
        if self.backend == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on any error.

        Database failures surface as DatabaseUnavailableError (503), never as a raw driver error.
        """
        async with self._sessions() as session:
            try:
                yield session
                await session.commit()
            except SQLAlchemyError as exc:
                await session.rollback()
                if _is_connectivity_error(exc):
                    raise DatabaseUnavailableError("the database is unavailable") from exc
                raise
            except BaseException:
                await session.rollback()
                raise

    async def ping(self) -> bool:
        """True when a trivial query succeeds (used by /readyz)."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError):
            return False
        return True

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers proceed while one writer commits; foreign keys are off by default in
    # SQLite; busy_timeout turns brief lock contention into a wait instead of an error.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()


def _is_connectivity_error(exc: SQLAlchemyError) -> bool:
    # Lost or refused connections, pool exhaustion and SQLite lock timeouts are all "try again
    # shortly" (503), not bugs (500).
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated
