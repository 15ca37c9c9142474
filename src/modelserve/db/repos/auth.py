"""Data access for users, API keys, refresh tokens and audit events.

Every function is keyword-only, takes the session and never commits: the caller's
`Database.session()` does. Datetimes go in and come out timezone-aware (UTC), also on SQLite,
which stores them without an offset.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from modelserve.db.repos import Session
from modelserve.db.tables.auth import ApiKeyRow, AuditEventRow, RefreshTokenRow, UserRow
from modelserve.errors import ConflictError


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """`value` with UTC attached when the backend dropped the offset."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


# Users


async def add_user(session: Session, *, row: UserRow) -> UserRow:
    """Insert a user; ConflictError when the username is taken."""
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ConflictError("a user with this username already exists") from exc
    return row


async def get_user(session: Session, *, user_id: str) -> UserRow | None:
    """The user with this id, or None."""
    return await session.get(UserRow, user_id)


async def get_user_by_username(session: Session, *, username: str) -> UserRow | None:
    """The user with this (normalized) username, or None."""
    result = await session.execute(select(UserRow).where(UserRow.username == username))
    return result.scalar_one_or_none()


async def count_users(session: Session) -> int:
    """How many users exist."""
    return int(await session.scalar(select(func.count()).select_from(UserRow)) or 0)


async def list_users(session: Session, *, limit: int, offset: int) -> tuple[Sequence[UserRow], int]:
    """A page of users by creation order, and the total count."""
    rows = await session.scalars(
        select(UserRow).order_by(UserRow.created_at, UserRow.id).limit(limit).offset(offset)
    )
    return rows.all(), await count_users(session)


async def delete_user(session: Session, *, user_id: str) -> None:
    """Delete a user; their keys and refresh tokens go with them (ON DELETE CASCADE)."""
    await session.execute(delete(ApiKeyRow).where(ApiKeyRow.owner_id == user_id))
    await session.execute(delete(RefreshTokenRow).where(RefreshTokenRow.user_id == user_id))
    await session.execute(delete(UserRow).where(UserRow.id == user_id))


# API keys


async def add_key(session: Session, *, row: ApiKeyRow) -> ApiKeyRow:
    """Insert an API key."""
    session.add(row)
    await session.flush()
    return row


async def get_key(session: Session, *, key_id: str) -> ApiKeyRow | None:
    """The key with this id, or None."""
    return await session.get(ApiKeyRow, key_id)


async def get_key_and_owner(session: Session, *, prefix: str) -> tuple[ApiKeyRow, UserRow] | None:
    """The key with this public prefix and its owner, or None."""
    result = await session.execute(
        select(ApiKeyRow, UserRow)
        .join(UserRow, UserRow.id == ApiKeyRow.owner_id)
        .where(ApiKeyRow.prefix == prefix)
    )
    found = result.first()
    return None if found is None else (found[0], found[1])


async def list_keys(
    session: Session, *, owner_id: str | None, limit: int, offset: int
) -> tuple[Sequence[ApiKeyRow], int]:
    """A page of keys (one owner's, or everyone's when `owner_id` is None) and the count."""
    where = [] if owner_id is None else [ApiKeyRow.owner_id == owner_id]
    rows = await session.scalars(
        select(ApiKeyRow)
        .where(*where)
        .order_by(ApiKeyRow.created_at, ApiKeyRow.id)
        .limit(limit)
        .offset(offset)
    )
    total = await session.scalar(select(func.count()).select_from(ApiKeyRow).where(*where))
    return rows.all(), int(total or 0)


async def touch_key(session: Session, *, key_id: str, now: dt.datetime) -> None:
    """Record that a key was used."""
    await session.execute(update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(last_used_at=now))


# Refresh tokens and sessions


async def add_refresh_token(session: Session, *, row: RefreshTokenRow) -> RefreshTokenRow:
    """Insert a refresh token."""
    session.add(row)
    await session.flush()
    return row


async def get_refresh_token(session: Session, *, digest: str) -> RefreshTokenRow | None:
    """The refresh token with this digest, or None."""
    result = await session.execute(select(RefreshTokenRow).where(RefreshTokenRow.digest == digest))
    return result.scalar_one_or_none()


async def rotate_refresh_token(session: Session, *, token_id: str, now: dt.datetime) -> bool:
    """Mark a live token rotated; False when it was not live (already used, revoked).

    One conditional UPDATE, so two concurrent refreshes with the same token cannot both win.
    """
    result = await session.execute(
        update(RefreshTokenRow)
        .where(
            RefreshTokenRow.id == token_id,
            RefreshTokenRow.rotated_at.is_(None),
            RefreshTokenRow.revoked_at.is_(None),
        )
        .values(rotated_at=now)
    )
    return _rowcount(result) == 1


async def revoke_session(session: Session, *, session_id: str, now: dt.datetime) -> None:
    """End one login session: every refresh token of it is revoked."""
    await session.execute(
        update(RefreshTokenRow)
        .where(RefreshTokenRow.session_id == session_id, RefreshTokenRow.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_user_sessions(session: Session, *, user_id: str, now: dt.datetime) -> None:
    """End every login session of a user."""
    await session.execute(
        update(RefreshTokenRow)
        .where(RefreshTokenRow.user_id == user_id, RefreshTokenRow.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def get_session_user(
    session: Session, *, session_id: str, user_id: str, now: dt.datetime
) -> UserRow | None:
    """The user of a live login session (one live refresh token), else None."""
    live = (
        select(RefreshTokenRow.id)
        .where(
            RefreshTokenRow.session_id == session_id,
            RefreshTokenRow.user_id == user_id,
            RefreshTokenRow.rotated_at.is_(None),
            RefreshTokenRow.revoked_at.is_(None),
            RefreshTokenRow.expires_at > now,
        )
        .exists()
    )
    result = await session.execute(select(UserRow).where(UserRow.id == user_id, live))
    return result.scalar_one_or_none()


async def delete_dead_refresh_tokens(session: Session, *, before: dt.datetime) -> int:
    """Remove refresh tokens that expired before `before`; how many went."""
    result = await session.execute(
        delete(RefreshTokenRow).where(RefreshTokenRow.expires_at < before)
    )
    return _rowcount(result)


# Audit events


async def add_event(session: Session, *, row: AuditEventRow) -> None:
    """Append an audit event."""
    session.add(row)
    await session.flush()


async def get_event(session: Session, *, event_id: int) -> AuditEventRow | None:
    """The audit event with this id, or None."""
    return await session.get(AuditEventRow, event_id)


async def list_events(
    session: Session,
    *,
    actor_id: str | None,
    event: str | None,
    before_id: int | None,
    limit: int,
    by: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Sequence[AuditEventRow]:
    """Newest first, up to `limit`, older than `before_id` when given (keyset paging); only
    events caused by user id `by`, and created in [since, until), when given."""
    where: list[Any] = []
    if actor_id is not None:
        # A member sees what they did and what was done to them.
        where.append(
            or_(
                AuditEventRow.actor_id == actor_id,
                and_(AuditEventRow.target_type == "user", AuditEventRow.target_id == actor_id),
            )
        )
    if event is not None:
        where.append(AuditEventRow.event == event)
    if before_id is not None:
        where.append(AuditEventRow.id < before_id)
    if by is not None:
        where.append(AuditEventRow.actor_id == by)
    if since is not None:
        where.append(AuditEventRow.created_at >= since)
    if until is not None:
        where.append(AuditEventRow.created_at < until)
    rows = await session.scalars(
        select(AuditEventRow).where(*where).order_by(AuditEventRow.id.desc()).limit(limit)
    )
    return rows.all()


def _rowcount(result: Any) -> int:
    count = getattr(result, "rowcount", 0)
    return int(count) if isinstance(count, int) else 0
