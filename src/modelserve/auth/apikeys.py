"""API key operations: create (shown once), list, show, revoke. The key format is `keys.py`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from modelserve.auth.accounts import new_id, utcnow
from modelserve.auth.audit import AuditEvent, AuditLog, Outcome, RequestMeta
from modelserve.auth.keys import (
    ADMIN_SCOPE,
    KEY_MARK,
    covers,
    generate_key,
    join_scopes,
    parse_scopes,
    split_scopes,
)
from modelserve.auth.principals import Authenticator, role_scopes
from modelserve.auth.ratelimit import RateLimiter, Rules
from modelserve.db.engine import Database
from modelserve.db.repos import Session
from modelserve.db.repos import auth as repo
from modelserve.db.tables.auth import ApiKeyRow
from modelserve.errors import PermissionDeniedError, ResourceNotFoundError
from modelserve.schemas.auth import ApiKeyCreate, ApiKeyCreated, ApiKeyListPublic, ApiKeyPublic
from modelserve.types import Principal


class KeyService:
    """Creating, listing and revoking API keys.

    Keys are managed with a login session, or with a key that holds `admin`: a leaked predict
    key cannot mint more keys. Members see and manage their own keys only (others' are "not
    found"); admins see all and may create keys for others. A key never gets a scope its owner
    (and its creator) does not hold.
    """

    def __init__(
        self,
        *,
        database: Database,
        audit: AuditLog,
        authenticator: Authenticator,
        limiter: RateLimiter,
        create_rules: Rules,
        member_scopes: Iterable[str],
    ) -> None:
        self._database = database
        self._audit = audit
        self._authenticator = authenticator
        self._limiter = limiter
        self._create_rules = create_rules
        self._member_scopes = tuple(member_scopes)

    async def create(
        self, data: ApiKeyCreate, *, actor: Principal, meta: RequestMeta
    ) -> ApiKeyCreated:
        """A new key for the caller (or, for admins, for `data.owner_id`); shown once."""
        _require_manager(actor)
        owner_id = data.owner_id or actor.owner_id
        if owner_id != actor.owner_id and not actor.has_scope(ADMIN_SCOPE):
            raise PermissionDeniedError("only admins create keys for other users")
        scopes = parse_scopes(data.scopes)
        await self._limiter.hit(f"key-create|{actor.owner_id}", self._create_rules)
        now = utcnow()
        new = generate_key()
        async with self._database.session() as session:
            owner = await repo.get_user(session, user_id=(owner_id or "")[:32])
            if owner is None:
                raise ResourceNotFoundError("no such user")
            held = role_scopes(owner.role, self._member_scopes)
            beyond = sorted(s for s in scopes if not (covers(held, s) and actor.has_scope(s)))
            if beyond:
                raise PermissionDeniedError(
                    "the key's owner may not use these scopes", details={"scopes": beyond}
                )
            row = ApiKeyRow(
                id=new_id(),
                prefix=new.prefix,
                digest=new.digest,
                name=data.name,
                owner_id=owner.id,
                scopes=join_scopes(scopes),
                created_at=now,
                expires_at=(
                    now + dt.timedelta(days=data.expires_in_days) if data.expires_in_days else None
                ),
            )
            await repo.add_key(session, row=row)
            await self._audit.record(
                session,
                AuditEvent.KEY_CREATED,
                actor=actor,
                meta=meta,
                target_type="api_key",
                target_id=row.id,
                details={"owner_id": owner.id, "scopes": sorted(scopes)},
            )
        return ApiKeyCreated(**public_key(row).model_dump(), key=new.key)

    async def list(
        self, *, actor: Principal, owner_id: str | None, limit: int, offset: int
    ) -> ApiKeyListPublic:
        """A page of keys: the caller's own; admins: everyone's, or one owner's."""
        _require_manager(actor)
        if not actor.has_scope(ADMIN_SCOPE):
            owner_id = actor.owner_id
        async with self._database.session() as session:
            rows, total = await repo.list_keys(
                session, owner_id=owner_id, limit=limit, offset=offset
            )
        return ApiKeyListPublic(
            data=[public_key(r) for r in rows], count=total, limit=limit, offset=offset
        )

    async def get(self, key_id: str, *, actor: Principal, meta: RequestMeta) -> ApiKeyPublic:
        """One key the caller may see."""
        _require_manager(actor)
        async with self._database.session() as session:
            row = await self._visible(session, key_id, actor, meta)
        return public_key(row)

    async def revoke(self, key_id: str, *, actor: Principal, meta: RequestMeta) -> None:
        """Revoke a key; refused by every process within the credential cache TTL."""
        _require_manager(actor)
        async with self._database.session() as session:
            row = await self._visible(session, key_id, actor, meta)
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                await self._audit.record(
                    session,
                    AuditEvent.KEY_REVOKED,
                    actor=actor,
                    meta=meta,
                    target_type="api_key",
                    target_id=row.id,
                )
        self._authenticator.forget_all()

    async def _visible(
        self, session: Session, key_id: str, actor: Principal, meta: RequestMeta
    ) -> ApiKeyRow:
        row = await repo.get_key(session, key_id=key_id[:32])
        if row is None:
            raise ResourceNotFoundError(KEY_NOT_FOUND)
        if row.owner_id != actor.owner_id and not actor.has_scope(ADMIN_SCOPE):
            await self._audit.record_detached(
                AuditEvent.PERMISSION_DENIED,
                actor=actor,
                meta=meta,
                outcome=Outcome.DENIED,
                target_type="api_key",
                target_id=row.id,
            )
            raise ResourceNotFoundError(KEY_NOT_FOUND)
        return row


KEY_NOT_FOUND = "no such API key"


def public_key(row: ApiKeyRow) -> ApiKeyPublic:
    """A key row as the API shows it: prefix and metadata, never the digest."""
    return ApiKeyPublic(
        id=row.id,
        name=row.name,
        prefix=f"{KEY_MARK}{row.prefix}",
        owner_id=row.owner_id,
        scopes=sorted(split_scopes(row.scopes)),
        created_at=repo.aware(row.created_at) or utcnow(),
        expires_at=repo.aware(row.expires_at),
        last_used_at=repo.aware(row.last_used_at),
        revoked_at=repo.aware(row.revoked_at),
    )


def _require_manager(actor: Principal) -> None:
    if actor.kind != "user" and not actor.has_scope(ADMIN_SCOPE):
        raise PermissionDeniedError("manage API keys with a login session or an admin key")
