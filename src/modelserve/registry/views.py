"""Registry rows as API schemas: the one place that turns ORM rows into Public models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modelserve.db.repos import Session
from modelserve.db.repos import registry as repo
from modelserve.db.tables.registry import (
    RegistryFileRow,
    RegistryModelRow,
    RegistryTrafficRow,
    RegistryVersionRow,
)
from modelserve.schemas.registry import (
    FilePublic,
    ModelPublic,
    Split,
    TrafficPublic,
    VersionPublic,
)


def traffic_public(row: RegistryTrafficRow | None, primary: str | None) -> TrafficPublic | None:
    """The stored traffic settings, with the primary the served alias names."""
    if row is None:
        return None
    return TrafficPublic(
        primary=primary,
        canary=[Split(version=str(v), percent=float(p)) for v, p in _pairs(row.canary)],
        sticky=row.sticky,
        shadow=(
            Split(version=row.shadow_version, percent=row.shadow_percent)
            if row.shadow_version and row.shadow_percent > 0
            else None
        ),
    )


def _pairs(canary: list[Any]) -> list[tuple[str, float]]:
    return [(str(entry[0]), float(entry[1])) for entry in canary]


def canary_pairs(row: RegistryTrafficRow | None) -> tuple[tuple[str, float], ...]:
    """The canary list of a traffic row as (version, percent) pairs."""
    return () if row is None else tuple(_pairs(row.canary))


async def models_public(
    session: Session, rows: Sequence[RegistryModelRow], *, serve_alias: str
) -> list[ModelPublic]:
    """Models with their aliases, version count, newest version and traffic (batched queries)."""
    ids = [row.id for row in rows]
    aliases = await repo.aliases_of(session=session, model_ids=ids)
    stats = await repo.version_stats(session=session, model_ids=ids)
    traffic = await repo.traffic_of(session=session, model_ids=ids)
    return [
        ModelPublic(
            name=row.name,
            description=row.description,
            labels={str(k): str(v) for k, v in row.labels.items()},
            aliases=aliases[row.id],
            latest_version=stats[row.id][1],
            version_count=stats[row.id][0],
            traffic=traffic_public(traffic.get(row.id), aliases[row.id].get(serve_alias)),
            created_at=row.created_at,
            created_by=row.created_by,
        )
        for row in rows
    ]


async def version_public(
    session: Session, model: RegistryModelRow, row: RegistryVersionRow
) -> VersionPublic:
    """A version with its files and the aliases that point at it."""
    return (await versions_public(session, model, [row]))[0]


async def versions_public(
    session: Session, model: RegistryModelRow, rows: Sequence[RegistryVersionRow]
) -> list[VersionPublic]:
    """Versions of one model with their files and aliases, in two queries for the whole page
    (not two per version)."""
    files = await repo.version_files(session=session, version_ids=[row.id for row in rows])
    aliases = (await repo.aliases_of(session=session, model_ids=[model.id]))[model.id]
    return [_version(model, row, files[row.id], aliases) for row in rows]


def _version(
    model: RegistryModelRow,
    row: RegistryVersionRow,
    files: Sequence[RegistryFileRow],
    aliases: dict[str, str],
) -> VersionPublic:
    return VersionPublic(
        model=model.name,
        version=row.version,
        service=row.service,
        framework=row.framework,
        description=row.description,
        metrics={str(k): float(v) for k, v in row.metrics.items()},
        labels={str(k): str(v) for k, v in row.labels.items()},
        input_schema=row.input_schema,
        output_schema=row.output_schema,
        trusted=row.trusted,
        files=[
            FilePublic(path=f.path, sha256=f.sha256, size=f.size, format=f.format) for f in files
        ],
        aliases=sorted(a for a, v in aliases.items() if v == row.version),
        created_at=row.created_at,
        created_by=row.created_by,
    )
