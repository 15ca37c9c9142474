"""Rollouts: move aliases (atomically, with history), roll them back, split traffic.

When the registry also serves (`modelserve serve --registry`), the `ServingHooks` load and warm
a version *before* the change commits: a version whose setup fails is refused with 409 and the
old one keeps serving. After the commit, `changed` switches traffic and retires what is unused.
Rolling back walks the alias's history: each rollback undoes the newest move not undone yet.

Every change is audited here, in the transaction that makes it (`model.alias_moved`,
`model.alias_deleted`, `model.rolled_back`, `model.traffic_changed`), so the REST routes and the
admin console record the same events, and a change that is refused or rolled back records none.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from modelserve.auth.audit import NO_META, AuditEvent, AuditLog, RequestMeta
from modelserve.db.repos import Session
from modelserve.db.repos import registry as repo
from modelserve.db.tables.registry import RegistryModelRow
from modelserve.errors import ConflictError, InvalidInputError, ResourceNotFoundError
from modelserve.registry.safety import check_name
from modelserve.registry.service import Registry
from modelserve.registry.views import traffic_public
from modelserve.schemas.registry import AliasPublic, TrafficPublic, TrafficUpdate
from modelserve.types import Principal

MAX_HISTORY = 200


@dataclass(frozen=True, slots=True)
class AliasMove:
    """One move of an alias, as its history shows it (`kind`: set, rollback or delete)."""

    alias: str
    kind: str
    version: str | None
    previous_version: str | None
    undone: bool
    by: str | None
    at: dt.datetime


class Rollouts:
    """Alias moves, rollbacks and traffic settings of a Registry.

    `audit` records each change (with the caller's `meta`: request id, address); None when
    the server runs without authentication, where there is no audit log.
    """

    def __init__(self, registry: Registry, *, audit: AuditLog | None = None) -> None:
        self._registry = registry
        self._audit = audit

    # -- aliases ---------------------------------------------------------------------------

    async def set_alias(
        self,
        principal: Principal,
        name: str,
        alias: str,
        version: str,
        *,
        meta: RequestMeta = NO_META,
    ) -> AliasPublic:
        """Point `alias` at `version`; for the served alias, load and warm it first."""
        check_name(alias, "alias")
        async with self._registry.database.session() as session:
            model = await self._registry.model_row(session, principal, name)
            await self._registry.version_row(session, model, version)
        async with (
            self._preparing(name, [version] if alias == self._registry.config.serve_alias else []),
            self._registry.database.session() as session,
        ):
            await repo.bump_generation(session=session)
            model = await self._registry.model_row(session, principal, name)
            target = await self._registry.version_row(session, model, version)
            current = await repo.get_alias(session=session, model_id=model.id, name=alias)
            previous_id: int | None = current.version_id if current else None
            if previous_id != target.id:
                previous_id = await repo.move_alias(
                    session=session,
                    model_id=model.id,
                    name=alias,
                    version_id=target.id,
                    kind="set",
                    by=principal.subject,
                )
                if alias == self._registry.config.serve_alias:
                    await self._drop_from_traffic(session, model.id, version)
                await repo.touch_model(session=session, model=model)
                moved = True
            else:
                previous_id = None
                moved = False
            result = await self._alias_public(session, model, alias, previous_id)
            if moved:
                details = {"alias": alias, "version": version, "from": result.previous_version}
                await self._record(session, AuditEvent.ALIAS_MOVED, principal, meta, name, details)
        await self._changed(name)
        return result

    async def delete_alias(
        self, principal: Principal, name: str, alias: str, *, meta: RequestMeta = NO_META
    ) -> None:
        """Remove an alias (the served one: the model stops being served)."""
        check_name(alias, "alias")
        async with self._registry.database.session() as session:
            await repo.bump_generation(session=session)
            model = await self._registry.model_row(session, principal, name)
            if (
                await repo.delete_alias(
                    session=session, model_id=model.id, name=alias, by=principal.subject
                )
                is None
            ):
                raise ResourceNotFoundError(f"model {name!r} has no alias {alias!r}")
            if alias == self._registry.config.serve_alias:
                await repo.delete_traffic(session=session, model_id=model.id)
            await self._record(
                session, AuditEvent.ALIAS_DELETED, principal, meta, name, {"alias": alias}
            )
        await self._changed(name)

    async def rollback(
        self,
        principal: Principal,
        name: str,
        alias: str | None,
        *,
        meta: RequestMeta = NO_META,
    ) -> AliasPublic:
        """Move the alias back to where it pointed before its last (not yet undone) move."""
        alias = check_name(alias or self._registry.config.serve_alias, "alias")
        async with self._registry.database.session() as session:
            model = await self._registry.model_row(session, principal, name)
            event = await repo.last_undoable_move(session=session, model_id=model.id, alias=alias)
            if event is None or event.previous_version_id is None:
                raise ConflictError(f"alias {alias!r} of {name!r} has no earlier version")
            earlier = await repo.versions_by_id(session=session, ids=[event.previous_version_id])
            label = earlier[event.previous_version_id].version
        async with (
            self._preparing(name, [label] if alias == self._registry.config.serve_alias else []),
            self._registry.database.session() as session,
        ):
            await repo.bump_generation(session=session)
            model = await self._registry.model_row(session, principal, name)
            again = await repo.last_undoable_move(session=session, model_id=model.id, alias=alias)
            if again is None or again.id != event.id:
                raise ConflictError(f"alias {alias!r} of {name!r} moved meanwhile; try again")
            again.undone = True
            previous_id = await repo.move_alias(
                session=session,
                model_id=model.id,
                name=alias,
                version_id=event.previous_version_id,
                kind="rollback",
                by=principal.subject,
            )
            if alias == self._registry.config.serve_alias:
                await self._drop_from_traffic(session, model.id, label)
            await repo.touch_model(session=session, model=model)
            result = await self._alias_public(session, model, alias, previous_id)
            details = {"alias": alias, "version": label, "from": result.previous_version}
            await self._record(session, AuditEvent.ROLLED_BACK, principal, meta, name, details)
        await self._changed(name)
        return result

    async def history(self, principal: Principal, name: str, *, limit: int) -> list[AliasMove]:
        """The model's newest alias moves, every alias, newest first (at most MAX_HISTORY)."""
        async with self._registry.database.session() as session:
            model = await self._registry.model_row(session, principal, name)
            rows = await repo.alias_events(
                session=session, model_id=model.id, limit=max(1, min(limit, MAX_HISTORY))
            )
            ids = {i for row in rows for i in (row.version_id, row.previous_version_id) if i}
            labels = await repo.versions_by_id(session=session, ids=list(ids))
        return [
            AliasMove(
                alias=row.alias,
                kind=row.kind,
                version=labels[row.version_id].version if row.version_id else None,
                previous_version=(
                    labels[row.previous_version_id].version if row.previous_version_id else None
                ),
                undone=row.undone,
                by=row.created_by,
                at=row.created_at,
            )
            for row in rows
        ]

    async def _alias_public(
        self, session: Session, model: RegistryModelRow, alias: str, previous_id: int | None
    ) -> AliasPublic:
        row = await repo.get_alias(session=session, model_id=model.id, name=alias)
        assert row is not None
        labels = await repo.versions_by_id(
            session=session, ids=[row.version_id, *([previous_id] if previous_id else [])]
        )
        return AliasPublic(
            model=model.name,
            alias=alias,
            version=labels[row.version_id].version,
            previous_version=labels[previous_id].version if previous_id else None,
            updated_at=row.updated_at,
        )

    # -- traffic ---------------------------------------------------------------------------

    async def set_traffic(
        self,
        principal: Principal,
        name: str,
        body: TrafficUpdate,
        *,
        meta: RequestMeta = NO_META,
    ) -> TrafficPublic:
        """Replace the model's canary/shadow settings; named versions are loaded first."""
        named = [s.version for s in body.canary] + ([body.shadow.version] if body.shadow else [])
        if len(set(named)) != len(named):
            raise InvalidInputError("a version may appear once among canaries and shadow")
        if sum(s.percent for s in body.canary) > 100:
            raise InvalidInputError("canary shares add up to more than 100 %")
        async with self._registry.database.session() as session:
            model = await self._registry.model_row(session, principal, name)
            aliases = await repo.aliases_of(session=session, model_ids=[model.id])
            serve_alias = self._registry.config.serve_alias
            primary = aliases[model.id].get(serve_alias)
            if primary is None:
                raise ConflictError(
                    f"{name!r} has no {serve_alias!r} alias: promote a version first"
                )
            if primary in named:
                raise InvalidInputError(f"version {primary!r} is already the primary")
            found = await repo.get_versions(session=session, model_id=model.id, versions=named)
            missing = [v for v in named if v not in found]
            if missing:
                raise ResourceNotFoundError(f"model {name!r} has no version {missing[0]!r}")
        async with self._preparing(name, named), self._registry.database.session() as session:
            await repo.bump_generation(session=session)
            model = await self._registry.model_row(session, principal, name)
            row = await repo.put_traffic(
                session=session,
                model_id=model.id,
                canary=[[s.version, s.percent] for s in body.canary],
                sticky=body.sticky,
                shadow_version=body.shadow.version if body.shadow else None,
                shadow_percent=body.shadow.percent if body.shadow else 0.0,
                by=principal.subject,
            )
            await repo.touch_model(session=session, model=model)
            result = traffic_public(row, primary)
            assert result is not None
            details: dict[str, Any] = {
                "canary": {s.version: s.percent for s in body.canary},
                "sticky": body.sticky,
                "shadow": body.shadow.model_dump() if body.shadow else None,
            }
            await self._record(session, AuditEvent.TRAFFIC_CHANGED, principal, meta, name, details)
        await self._changed(name)
        return result

    async def clear_traffic(
        self, principal: Principal, name: str, *, meta: RequestMeta = NO_META
    ) -> None:
        """Remove canaries and shadow: the served alias's version takes all traffic."""
        async with self._registry.database.session() as session:
            await repo.bump_generation(session=session)
            model = await self._registry.model_row(session, principal, name)
            await repo.delete_traffic(session=session, model_id=model.id)
            details = {"canary": {}, "sticky": False, "shadow": None}
            await self._record(session, AuditEvent.TRAFFIC_CHANGED, principal, meta, name, details)
        await self._changed(name)

    async def _record(
        self,
        session: Session,
        event: AuditEvent,
        principal: Principal,
        meta: RequestMeta,
        name: str,
        details: dict[str, Any],
    ) -> None:
        if self._audit is not None:
            await self._audit.record(
                session,
                event,
                actor=principal,
                meta=meta,
                target_type="model",
                target_id=name,
                details=details,
            )

    async def _drop_from_traffic(self, session: Session, model_id: int, version: str) -> None:
        # The version becoming primary stops being a canary or shadow of itself.
        row = await repo.get_traffic(session=session, model_id=model_id)
        if row is None:
            return
        canary = [entry for entry in row.canary if entry[0] != version]
        shadow = None if row.shadow_version == version else row.shadow_version
        if canary != row.canary or shadow != row.shadow_version:
            await repo.put_traffic(
                session=session,
                model_id=model_id,
                canary=canary,
                sticky=row.sticky,
                shadow_version=shadow,
                shadow_percent=row.shadow_percent if shadow else 0.0,
                by=row.updated_by,
            )

    # -- serving hooks ---------------------------------------------------------------------

    def _preparing(self, name: str, versions: list[str]) -> AbstractAsyncContextManager[None]:
        if self._registry.hooks is None or not versions:
            return contextlib.nullcontext()
        return self._registry.hooks.preparing(name, versions)

    async def _changed(self, name: str) -> None:
        if self._registry.hooks is not None:
            await self._registry.hooks.changed(name)
