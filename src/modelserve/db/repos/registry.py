"""Data access for the model registry. Keyword-only functions; the caller owns the session.

Every write transaction calls `bump_generation` first: it takes the registry's one write lock
(a row lock on PostgreSQL, the database write lock on SQLite) for the rest of the transaction,
so concurrent writers queue instead of interleaving, and other processes see the new counter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from modelserve.db.base import utcnow
from modelserve.db.tables.registry import (
    RegistryAliasEventRow,
    RegistryAliasRow,
    RegistryFileRow,
    RegistryModelRow,
    RegistryStateRow,
    RegistryTrafficRow,
    RegistryVersionRow,
)
from modelserve.errors import ConflictError

STATE_ID = 1


@dataclass(frozen=True, slots=True)
class NewFile:
    """One artifact row to write with a new version."""

    path: str
    sha256: str
    size: int
    format: str


async def bump_generation(*, session: AsyncSession) -> int:
    """Increment the change counter (taking the registry write lock); return the new value."""
    result = await session.execute(
        update(RegistryStateRow)
        .where(RegistryStateRow.id == STATE_ID)
        .values(generation=RegistryStateRow.generation + 1)
        .returning(RegistryStateRow.generation)
    )
    value = result.scalar_one_or_none()
    if value is None:  # a database created without the migration's seed row
        session.add(RegistryStateRow(id=STATE_ID, generation=1))
        await session.flush()
        return 1
    return int(value)


async def get_generation(*, session: AsyncSession) -> int:
    """The change counter (0 before any write)."""
    value = await session.scalar(
        select(RegistryStateRow.generation).where(RegistryStateRow.id == STATE_ID)
    )
    return int(value or 0)


async def _flush(session: AsyncSession, what: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ConflictError(f"{what} already exists") from exc


# -- models ----------------------------------------------------------------------------------


async def get_model(*, session: AsyncSession, name: str) -> RegistryModelRow | None:
    """The model named `name`, if registered."""
    row: RegistryModelRow | None = await session.scalar(
        select(RegistryModelRow).where(RegistryModelRow.name == name)
    )
    return row


async def create_model(
    *,
    session: AsyncSession,
    name: str,
    description: str,
    labels: dict[str, str],
    owner_id: str | None,
    created_by: str | None,
) -> RegistryModelRow:
    """Insert a model; ConflictError when the name is taken."""
    row = RegistryModelRow(
        name=name,
        description=description,
        labels=labels,
        owner_id=owner_id,
        created_by=created_by,
        updated_at=utcnow(),
    )
    session.add(row)
    await _flush(session, f"a model named {name!r}")
    return row


async def touch_model(*, session: AsyncSession, model: RegistryModelRow) -> None:
    """Record that something of the model changed now."""
    model.updated_at = utcnow()


async def list_models(
    *, session: AsyncSession, owner_id: str | None, all_owners: bool, limit: int, offset: int
) -> tuple[Sequence[RegistryModelRow], int]:
    """A page of models by name, and the total; only `owner_id`'s unless `all_owners`."""
    query = select(RegistryModelRow)
    counting = select(func.count()).select_from(RegistryModelRow)
    if not all_owners:
        query = query.where(RegistryModelRow.owner_id == owner_id)
        counting = counting.where(RegistryModelRow.owner_id == owner_id)
    rows = (
        await session.scalars(query.order_by(RegistryModelRow.name).limit(limit).offset(offset))
    ).all()
    total = await session.scalar(counting)
    return rows, int(total or 0)


# -- versions --------------------------------------------------------------------------------


async def get_version(
    *, session: AsyncSession, model_id: int, version: str
) -> RegistryVersionRow | None:
    """One version of a model by its label."""
    row: RegistryVersionRow | None = await session.scalar(
        select(RegistryVersionRow).where(
            RegistryVersionRow.model_id == model_id, RegistryVersionRow.version == version
        )
    )
    return row


async def get_versions(
    *, session: AsyncSession, model_id: int, versions: Iterable[str]
) -> dict[str, RegistryVersionRow]:
    """Versions of a model by label (missing labels are absent from the result)."""
    labels = list(versions)
    if not labels:
        return {}
    rows = await session.scalars(
        select(RegistryVersionRow).where(
            RegistryVersionRow.model_id == model_id, RegistryVersionRow.version.in_(labels)
        )
    )
    return {row.version: row for row in rows}


async def versions_by_id(
    *, session: AsyncSession, ids: Iterable[int]
) -> dict[int, RegistryVersionRow]:
    """Versions by row id."""
    wanted = list(set(ids))
    if not wanted:
        return {}
    rows = await session.scalars(
        select(RegistryVersionRow).where(RegistryVersionRow.id.in_(wanted))
    )
    return {row.id: row for row in rows}


async def list_versions(
    *, session: AsyncSession, model_id: int, limit: int, offset: int
) -> tuple[Sequence[RegistryVersionRow], int]:
    """A page of a model's versions, newest first, and the total."""
    rows = (
        await session.scalars(
            select(RegistryVersionRow)
            .where(RegistryVersionRow.model_id == model_id)
            .order_by(RegistryVersionRow.seq.desc())
            .limit(limit)
            .offset(offset)
        )
    ).all()
    total = await session.scalar(
        select(func.count())
        .select_from(RegistryVersionRow)
        .where(RegistryVersionRow.model_id == model_id)
    )
    return rows, int(total or 0)


async def version_stats(
    *, session: AsyncSession, model_ids: Iterable[int]
) -> dict[int, tuple[int, str | None]]:
    """model id -> (number of versions, label of the newest)."""
    wanted = list(set(model_ids))
    if not wanted:
        return {}
    counts = await session.execute(
        select(RegistryVersionRow.model_id, func.count(), func.max(RegistryVersionRow.seq))
        .where(RegistryVersionRow.model_id.in_(wanted))
        .group_by(RegistryVersionRow.model_id)
    )
    stats = {model_id: (int(count), int(seq)) for model_id, count, seq in counts.all()}
    latest: dict[int, str] = {}
    if stats:
        rows = await session.execute(
            select(
                RegistryVersionRow.model_id, RegistryVersionRow.seq, RegistryVersionRow.version
            ).where(RegistryVersionRow.model_id.in_(list(stats)))
        )
        for model_id, seq, label in rows.all():
            if stats[model_id][1] == seq:
                latest[model_id] = label
    return {m: (stats.get(m, (0, 0))[0], latest.get(m)) for m in wanted}


async def next_seq(*, session: AsyncSession, model_id: int) -> int:
    """The creation number the next version of the model gets."""
    value = await session.scalar(
        select(func.max(RegistryVersionRow.seq)).where(RegistryVersionRow.model_id == model_id)
    )
    return int(value or 0) + 1


async def create_version(
    *,
    session: AsyncSession,
    model_id: int,
    version: str,
    seq: int,
    fields: dict[str, Any],
    files: Sequence[NewFile],
) -> RegistryVersionRow:
    """Insert a version and its files; ConflictError when the label is taken."""
    row = RegistryVersionRow(model_id=model_id, version=version, seq=seq, **fields)
    session.add(row)
    await _flush(session, f"version {version!r}")
    session.add_all(
        RegistryFileRow(
            version_id=row.id, path=f.path, sha256=f.sha256, size=f.size, format=f.format
        )
        for f in files
    )
    await _flush(session, "a file path of this version")
    return row


async def version_files(
    *, session: AsyncSession, version_ids: Iterable[int]
) -> dict[int, list[RegistryFileRow]]:
    """Files per version id, by path."""
    wanted = list(set(version_ids))
    result: dict[int, list[RegistryFileRow]] = {v: [] for v in wanted}
    if not wanted:
        return result
    rows = await session.scalars(
        select(RegistryFileRow)
        .where(RegistryFileRow.version_id.in_(wanted))
        .order_by(RegistryFileRow.path)
    )
    for row in rows:
        result[row.version_id].append(row)
    return result


# -- aliases ---------------------------------------------------------------------------------


async def get_alias(*, session: AsyncSession, model_id: int, name: str) -> RegistryAliasRow | None:
    """An alias of a model."""
    row: RegistryAliasRow | None = await session.get(RegistryAliasRow, (model_id, name))
    return row


async def aliases_of(
    *, session: AsyncSession, model_ids: Iterable[int]
) -> dict[int, dict[str, str]]:
    """model id -> {alias: version label}."""
    wanted = list(set(model_ids))
    result: dict[int, dict[str, str]] = {m: {} for m in wanted}
    if not wanted:
        return result
    rows = await session.execute(
        select(RegistryAliasRow.model_id, RegistryAliasRow.name, RegistryVersionRow.version)
        .join(RegistryVersionRow, RegistryVersionRow.id == RegistryAliasRow.version_id)
        .where(RegistryAliasRow.model_id.in_(wanted))
        .order_by(RegistryAliasRow.name)
    )
    for model_id, alias, label in rows.all():
        result[model_id][alias] = label
    return result


async def move_alias(
    *,
    session: AsyncSession,
    model_id: int,
    name: str,
    version_id: int,
    kind: str,
    by: str | None,
) -> int | None:
    """Point the alias at `version_id` and log the move; return the previous version id."""
    row = await get_alias(session=session, model_id=model_id, name=name)
    previous = row.version_id if row is not None else None
    now = utcnow()
    if row is None:
        session.add(
            RegistryAliasRow(
                model_id=model_id, name=name, version_id=version_id, updated_at=now, updated_by=by
            )
        )
    else:
        row.version_id = version_id
        row.updated_at = now
        row.updated_by = by
    session.add(
        RegistryAliasEventRow(
            model_id=model_id,
            alias=name,
            kind=kind,
            version_id=version_id,
            previous_version_id=previous,
            created_by=by,
        )
    )
    await session.flush()
    return previous


async def delete_alias(
    *, session: AsyncSession, model_id: int, name: str, by: str | None
) -> int | None:
    """Remove the alias (logged); return the version id it pointed at, None if unset."""
    row = await get_alias(session=session, model_id=model_id, name=name)
    if row is None:
        return None
    previous = row.version_id
    await session.delete(row)
    session.add(
        RegistryAliasEventRow(
            model_id=model_id,
            alias=name,
            kind="delete",
            version_id=None,
            previous_version_id=previous,
            created_by=by,
        )
    )
    # Moves before a delete are not rolled back across it: the history restarts here.
    await session.execute(
        update(RegistryAliasEventRow)
        .where(RegistryAliasEventRow.model_id == model_id, RegistryAliasEventRow.alias == name)
        .values(undone=True)
    )
    await session.flush()
    return previous


async def last_undoable_move(
    *, session: AsyncSession, model_id: int, alias: str
) -> RegistryAliasEventRow | None:
    """The newest `set` of the alias that no rollback has undone."""
    row: RegistryAliasEventRow | None = await session.scalar(
        select(RegistryAliasEventRow)
        .where(
            RegistryAliasEventRow.model_id == model_id,
            RegistryAliasEventRow.alias == alias,
            RegistryAliasEventRow.kind == "set",
            RegistryAliasEventRow.undone.is_(False),
        )
        .order_by(RegistryAliasEventRow.id.desc())
        .limit(1)
    )
    return row


async def alias_events(
    *, session: AsyncSession, model_id: int, limit: int
) -> Sequence[RegistryAliasEventRow]:
    """The model's newest alias moves (every alias), newest first."""
    rows = await session.scalars(
        select(RegistryAliasEventRow)
        .where(RegistryAliasEventRow.model_id == model_id)
        .order_by(RegistryAliasEventRow.id.desc())
        .limit(limit)
    )
    return rows.all()


# -- traffic ---------------------------------------------------------------------------------


async def get_traffic(*, session: AsyncSession, model_id: int) -> RegistryTrafficRow | None:
    """The model's canary/shadow settings, if any."""
    row: RegistryTrafficRow | None = await session.get(RegistryTrafficRow, model_id)
    return row


async def traffic_of(
    *, session: AsyncSession, model_ids: Iterable[int]
) -> dict[int, RegistryTrafficRow]:
    """Traffic rows by model id."""
    wanted = list(set(model_ids))
    if not wanted:
        return {}
    rows = await session.scalars(
        select(RegistryTrafficRow).where(RegistryTrafficRow.model_id.in_(wanted))
    )
    return {row.model_id: row for row in rows}


async def put_traffic(
    *,
    session: AsyncSession,
    model_id: int,
    canary: list[list[Any]],
    sticky: bool,
    shadow_version: str | None,
    shadow_percent: float,
    by: str | None,
) -> RegistryTrafficRow:
    """Create or replace the model's traffic settings."""
    row = await get_traffic(session=session, model_id=model_id)
    if row is None:
        row = RegistryTrafficRow(model_id=model_id)
        session.add(row)
    row.canary = canary
    row.sticky = sticky
    row.shadow_version = shadow_version
    row.shadow_percent = shadow_percent
    row.updated_at = utcnow()
    row.updated_by = by
    await session.flush()
    return row


async def delete_traffic(*, session: AsyncSession, model_id: int) -> bool:
    """Remove the model's traffic settings; True if there were any."""
    result = await session.execute(
        delete(RegistryTrafficRow).where(RegistryTrafficRow.model_id == model_id)
    )
    return bool(getattr(result, "rowcount", 0))


# -- serving ---------------------------------------------------------------------------------


async def served_models(
    *, session: AsyncSession, alias: str
) -> list[tuple[RegistryModelRow, RegistryVersionRow, RegistryTrafficRow | None]]:
    """Every model whose `alias` is set: the model, the aliased version, its traffic row."""
    rows = await session.execute(
        select(RegistryModelRow, RegistryVersionRow, RegistryTrafficRow)
        .join(RegistryAliasRow, RegistryAliasRow.model_id == RegistryModelRow.id)
        .join(RegistryVersionRow, RegistryVersionRow.id == RegistryAliasRow.version_id)
        .outerjoin(RegistryTrafficRow, RegistryTrafficRow.model_id == RegistryModelRow.id)
        .where(RegistryAliasRow.name == alias)
        .order_by(RegistryModelRow.name)
    )
    return [(m, v, t) for m, v, t in rows.all()]
