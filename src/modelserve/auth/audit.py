"""The audit log: security events in the `audit_events` table, with the request id.

Events that belong to a change (a key created, a role changed) are written in the change's own
transaction, so they exist exactly when the change does. Events about something refused
(a failed login, a denied access) are written in a transaction of their own, because the
request's transaction rolls back. Events never hold secrets: no passwords, keys or tokens.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import logging
from dataclasses import dataclass
from typing import Any

from modelserve.db.engine import Database
from modelserve.db.repos import Session
from modelserve.db.repos import auth as repo
from modelserve.db.tables.auth import AuditEventRow
from modelserve.errors import ResourceNotFoundError
from modelserve.schemas.auth import AuditEventPublic, AuditListPublic
from modelserve.types import Principal

logger = logging.getLogger("modelserve.audit")

# Detached writes waiting at once; past this, events are logged but not stored, so a flood
# of denied requests cannot queue unbounded database work.
MAX_PENDING_WRITES = 64


class AuditEvent(enum.StrEnum):
    """What happened."""

    LOGIN_SUCCEEDED = "login.succeeded"
    LOGIN_FAILED = "login.failed"
    LOGIN_LIMITED = "login.limited"
    LOGOUT = "logout"
    TOKEN_REFRESHED = "token.refreshed"  # noqa: S105 (an event name, not a secret)
    REFRESH_REUSED = "token.refresh_reused"
    PASSWORD_CHANGED = "password.changed"  # noqa: S105 (an event name)
    USER_CREATED = "user.created"
    ROLE_CHANGED = "user.role_changed"
    USER_DISABLED = "user.disabled"
    USER_ENABLED = "user.enabled"
    USER_DELETED = "user.deleted"
    KEY_CREATED = "key.created"
    KEY_REVOKED = "key.revoked"
    PERMISSION_DENIED = "access.denied"
    JOB_SUBMITTED = "job.submitted"
    JOB_CANCELLED = "job.cancelled"
    JOB_RETRIED = "job.retried"
    SCHEDULE_CREATED = "schedule.created"
    SCHEDULE_DELETED = "schedule.deleted"
    SCHEDULE_PAUSED = "schedule.paused"
    SCHEDULE_RESUMED = "schedule.resumed"
    # Registry changes, from the REST routes and the console alike (registry/rollout.py).
    ALIAS_MOVED = "model.alias_moved"
    ALIAS_DELETED = "model.alias_deleted"
    ROLLED_BACK = "model.rolled_back"
    TRAFFIC_CHANGED = "model.traffic_changed"


class Outcome(enum.StrEnum):
    """How it ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """Where a request came from, as the audit log records it."""

    request_id: str | None = None
    client_ip: str | None = None


NO_META = RequestMeta()


class AuditLog:
    """Writes audit events."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._pending: set[asyncio.Task[None]] = set()

    async def record(
        self,
        session: Session,
        event: AuditEvent,
        *,
        actor: Principal | None,
        meta: RequestMeta,
        outcome: Outcome = Outcome.SUCCESS,
        target_type: str | None = None,
        target_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Add an event to `session`'s transaction."""
        row = _row(event, actor, meta, outcome, target_type, target_id, details)
        logger.info(
            "audit %s %s actor=%s target=%s:%s request=%s",
            event.value,
            outcome.value,
            row.actor_id,
            target_type,
            target_id,
            meta.request_id,
        )
        await repo.add_event(session, row=row)

    async def record_detached(self, event: AuditEvent, **fields: Any) -> None:
        """Write an event in its own transaction (the request's one is rolling back)."""
        try:
            async with self._database.session() as session:
                await self.record(session, event, **fields)
        except Exception:  # the refusal must still be answered; the log line above remains
            logger.exception("could not store audit event %s", event.value)

    def record_soon(self, event: AuditEvent, **fields: Any) -> None:
        """Write an event in the background (refusals on hot paths); dropped when saturated."""
        if len(self._pending) >= MAX_PENDING_WRITES:
            logger.warning("audit backlog full; event %s not stored", event.value)
            return
        task = asyncio.get_running_loop().create_task(self.record_detached(event, **fields))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for background writes (shutdown, tests)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


class AuditReader:
    """Queries the audit log: admins see every event, members what they did or underwent."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def list(
        self,
        *,
        actor: Principal,
        event: str | None,
        before_id: int | None,
        limit: int,
        by: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> AuditListPublic:
        """Newest first, `limit` at most; page with `before_id`. Narrowed to events caused by
        user id `by` and to `since <= created_at < until` when given."""
        async with self._database.session() as session:
            rows = await repo.list_events(
                session,
                actor_id=None if actor.has_scope("admin") else (actor.owner_id or "-"),
                event=event,
                before_id=before_id,
                limit=limit,
                by=by,
                since=since,
                until=until,
            )
        data = [public_event(r) for r in rows]
        return AuditListPublic(
            data=data, next_before_id=data[-1].id if len(data) == limit else None
        )

    async def get(self, event_id: int, *, actor: Principal) -> AuditEventPublic:
        """One event the caller may see; ResourceNotFoundError otherwise."""
        async with self._database.session() as session:
            row = await repo.get_event(session, event_id=event_id)
        if row is None or not (actor.has_scope("admin") or _concerns(row, actor.owner_id)):
            raise ResourceNotFoundError("no such audit event")
        return public_event(row)


def public_event(row: AuditEventRow) -> AuditEventPublic:
    """An audit row as the API shows it."""
    return AuditEventPublic.model_validate(row).model_copy(
        update={"created_at": repo.aware(row.created_at)}
    )


def _concerns(row: AuditEventRow, user_id: str | None) -> bool:
    if user_id is None:
        return False
    return row.actor_id == user_id or (row.target_type == "user" and row.target_id == user_id)


def _row(
    event: AuditEvent,
    actor: Principal | None,
    meta: RequestMeta,
    outcome: Outcome,
    target_type: str | None,
    target_id: str | None,
    details: dict[str, Any] | None,
) -> AuditEventRow:
    actor_id = None
    if actor is not None and actor.kind != "anonymous":
        actor_id = actor.owner_id
    if actor is not None and actor.kind == "api_key":
        details = {**(details or {}), "key_id": actor.subject}
    return AuditEventRow(
        event=event.value,
        outcome=outcome.value,
        actor_id=actor_id,
        actor_kind=actor.kind if actor is not None else "anonymous",
        target_type=target_type,
        target_id=target_id,
        request_id=meta.request_id,
        client_ip=meta.client_ip,
        details=details,
    )
