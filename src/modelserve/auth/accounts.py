"""User accounts: create, list, show, change (role, disable/enable, password), delete.

Visibility first, then permission: a user someone may not see is "not found" (404, no
existence leak, S1) and the attempt is audited; routes have already checked the scope.
Disabling a user, resetting or changing a password ends every login session of that user.
"""

from __future__ import annotations

import datetime as dt
import uuid

from modelserve.auth.audit import AuditEvent, AuditLog, Outcome, RequestMeta
from modelserve.auth.passwords import PasswordHasher, check_password_policy, normalize_name
from modelserve.auth.principals import Authenticator
from modelserve.db.engine import Database
from modelserve.db.repos import Session
from modelserve.db.repos import auth as repo
from modelserve.db.tables.auth import UserRow
from modelserve.errors import (
    AuthenticationError,
    ConflictError,
    PermissionDeniedError,
    ResourceNotFoundError,
)
from modelserve.schemas.auth import (
    PasswordChange,
    PrincipalPublic,
    UserCreate,
    UserListPublic,
    UserPublic,
    UserUpdate,
)
from modelserve.types import Principal

USER_NOT_FOUND = "no such user"


def new_id() -> str:
    """A random, unguessable object id."""
    return uuid.uuid4().hex


def utcnow() -> dt.datetime:
    """Now, timezone-aware."""
    return dt.datetime.now(dt.UTC)


def public_user(row: UserRow) -> UserPublic:
    """A user row as the API shows it (never the hash)."""
    return UserPublic(
        id=row.id,
        username=row.username,
        role="admin" if row.role == "admin" else "member",
        is_active=row.is_active,
        created_at=repo.aware(row.created_at) or utcnow(),
        password_changed_at=repo.aware(row.password_changed_at) or utcnow(),
    )


class AccountService:
    """Operations on users."""

    def __init__(
        self,
        *,
        database: Database,
        hasher: PasswordHasher,
        audit: AuditLog,
        authenticator: Authenticator,
    ) -> None:
        self._database = database
        self._hasher = hasher
        self._audit = audit
        self._authenticator = authenticator

    async def create_user(
        self, data: UserCreate, *, actor: Principal | None, meta: RequestMeta
    ) -> UserPublic:
        """Add a user (ConflictError when the username is taken)."""
        check_password_policy(data.password, username=data.username)
        hashed = await self._hasher.hash(data.password)
        now = utcnow()
        row = UserRow(
            id=new_id(),
            username=normalize_name(data.username),
            password_hash=hashed,
            role=data.role,
            is_active=True,
            password_changed_at=now,
            created_at=now,
        )
        async with self._database.session() as session:
            await repo.add_user(session, row=row)
            await self._audit.record(
                session,
                AuditEvent.USER_CREATED,
                actor=actor,
                meta=meta,
                target_type="user",
                target_id=row.id,
                details={"role": data.role},
            )
        return public_user(row)

    async def list_users(self, *, limit: int, offset: int) -> UserListPublic:
        """A page of users (the route requires `admin`)."""
        async with self._database.session() as session:
            rows, total = await repo.list_users(session, limit=limit, offset=offset)
        return UserListPublic(
            data=[public_user(r) for r in rows], count=total, limit=limit, offset=offset
        )

    async def get_user(self, user_id: str, *, actor: Principal, meta: RequestMeta) -> UserPublic:
        """One user: yourself, or anyone for admins."""
        async with self._database.session() as session:
            row = await self._visible(session, user_id, actor, meta)
        return public_user(row)

    async def update_user(
        self, user_id: str, data: UserUpdate, *, actor: Principal, meta: RequestMeta
    ) -> UserPublic:
        """Change role, active flag or password (the route requires `admin`)."""
        if data.password is not None:
            check_password_policy(data.password)
            new_hash: str | None = await self._hasher.hash(data.password)
        else:
            new_hash = None
        now = utcnow()
        async with self._database.session() as session:
            row = await self._visible(session, user_id, actor, meta)
            if row.id == actor.owner_id and (data.role == "member" or data.is_active is False):
                raise ConflictError("you cannot demote or disable yourself; ask another admin")
            events: list[AuditEvent] = []
            if data.role is not None and data.role != row.role:
                row.role = data.role
                events.append(AuditEvent.ROLE_CHANGED)
            if data.is_active is not None and data.is_active != row.is_active:
                row.is_active = data.is_active
                events.append(
                    AuditEvent.USER_ENABLED if data.is_active else AuditEvent.USER_DISABLED
                )
            if new_hash is not None:
                row.password_hash = new_hash
                row.password_changed_at = now
                events.append(AuditEvent.PASSWORD_CHANGED)
            if not row.is_active or new_hash is not None:
                await repo.revoke_user_sessions(session, user_id=row.id, now=now)
            for event in events:
                await self._audit.record(
                    session,
                    event,
                    actor=actor,
                    meta=meta,
                    target_type="user",
                    target_id=row.id,
                    details={"role": row.role} if event is AuditEvent.ROLE_CHANGED else None,
                )
            await session.flush()
        self._authenticator.forget_all()
        return public_user(row)

    async def delete_user(self, user_id: str, *, actor: Principal, meta: RequestMeta) -> None:
        """Delete a user with their keys and sessions (the route requires `admin`)."""
        async with self._database.session() as session:
            row = await self._visible(session, user_id, actor, meta)
            if row.id == actor.owner_id:
                raise ConflictError("you cannot delete yourself; ask another admin")
            await repo.delete_user(session, user_id=row.id)
            await self._audit.record(
                session,
                AuditEvent.USER_DELETED,
                actor=actor,
                meta=meta,
                target_type="user",
                target_id=row.id,
            )
        self._authenticator.forget_all()

    async def change_password(
        self, data: PasswordChange, *, actor: Principal, meta: RequestMeta
    ) -> None:
        """The caller changes their own password; all their sessions end (log in again)."""
        if actor.kind != "user" or actor.owner_id is None:
            raise PermissionDeniedError("change a password with a login session, not an API key")
        async with self._database.session() as session:
            row = await repo.get_user(session, user_id=actor.owner_id)
        if row is None:
            raise AuthenticationError("invalid or expired credentials")
        matches, _ = await self._hasher.verify(data.current_password, row.password_hash)
        if not matches:
            await self._audit.record_detached(
                AuditEvent.PASSWORD_CHANGED,
                actor=actor,
                meta=meta,
                outcome=Outcome.FAILURE,
                target_type="user",
                target_id=row.id,
            )
            raise PermissionDeniedError("the current password is not correct")
        check_password_policy(data.new_password, username=row.username)
        new_hash = await self._hasher.hash(data.new_password)
        now = utcnow()
        async with self._database.session() as session:
            fresh = await repo.get_user(session, user_id=row.id)
            if fresh is None:
                raise AuthenticationError("invalid or expired credentials")
            fresh.password_hash = new_hash
            fresh.password_changed_at = now
            await repo.revoke_user_sessions(session, user_id=row.id, now=now)
            await self._audit.record(
                session,
                AuditEvent.PASSWORD_CHANGED,
                actor=actor,
                meta=meta,
                target_type="user",
                target_id=row.id,
            )
        self._authenticator.forget_all()

    async def describe(self, principal: Principal) -> PrincipalPublic:
        """Who the caller is, with their user record."""
        user = None
        if principal.owner_id is not None:
            async with self._database.session() as session:
                row = await repo.get_user(session, user_id=principal.owner_id)
            user = public_user(row) if row is not None else None
        return PrincipalPublic(
            kind=principal.kind,
            subject=principal.subject,
            role=principal.role,
            scopes=sorted(principal.scopes),
            user=user,
        )

    async def _visible(
        self, session: Session, user_id: str, actor: Principal, meta: RequestMeta
    ) -> UserRow:
        row = await repo.get_user(session, user_id=user_id[:32])
        if row is None:
            raise ResourceNotFoundError(USER_NOT_FOUND)
        if row.id != actor.owner_id and not actor.has_scope("admin"):
            await self._audit.record_detached(
                AuditEvent.PERMISSION_DENIED,
                actor=actor,
                meta=meta,
                outcome=Outcome.DENIED,
                target_type="user",
                target_id=row.id,
            )
            raise ResourceNotFoundError(USER_NOT_FOUND)
        return row
