"""Data access for the prediction log. Keyword-only, session passed in, never commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select

from modelserve.db.repos import Session
from modelserve.db.tables.predictions import PredictionLogRow

# Columns a writer may fill; anything else in an entry is a bug of the caller.
ENTRY_FIELDS = frozenset(
    {
        "created_at",
        "model",
        "version",
        "request_id",
        "principal_id",
        "status",
        "latency_ms",
        "sample_rate",
        "error_code",
        "input_json",
        "output_json",
        "cached",
    }
)


@dataclass(frozen=True, slots=True)
class LoggedPrediction:
    """One row as analytics read it (no ORM object leaves this module)."""

    created_at: dt.datetime
    version: str
    status: int
    latency_ms: float
    sample_rate: float
    input_json: str | None
    output_json: str | None
    # How the prediction cache answered; None for a model that is not cached.
    cached: str | None = None


async def add_predictions(*, session: Session, entries: Sequence[Mapping[str, Any]]) -> int:
    """Insert many rows in one statement; return how many."""
    if not entries:
        return 0
    for entry in entries:
        unknown = set(entry) - ENTRY_FIELDS
        if unknown:
            raise ValueError(f"unknown prediction-log fields: {sorted(unknown)}")
    await session.execute(insert(PredictionLogRow), [dict(e) for e in entries])
    return len(entries)


async def list_predictions(
    *,
    session: Session,
    model: str,
    since: dt.datetime,
    until: dt.datetime,
    limit: int,
) -> list[LoggedPrediction]:
    """The newest `limit` rows of `model` with since <= created_at < until, oldest first."""
    statement = (
        select(
            PredictionLogRow.created_at,
            PredictionLogRow.version,
            PredictionLogRow.status,
            PredictionLogRow.latency_ms,
            PredictionLogRow.sample_rate,
            PredictionLogRow.input_json,
            PredictionLogRow.output_json,
            PredictionLogRow.cached,
        )
        .where(
            PredictionLogRow.model == model,
            PredictionLogRow.created_at >= since,
            PredictionLogRow.created_at < until,
        )
        .order_by(PredictionLogRow.created_at.desc())
        .limit(limit)
    )
    rows = (await session.execute(statement)).all()
    found = [
        LoggedPrediction(
            created_at=_aware(r.created_at),
            version=r.version,
            status=r.status,
            latency_ms=r.latency_ms,
            sample_rate=r.sample_rate,
            input_json=r.input_json,
            output_json=r.output_json,
            cached=r.cached,
        )
        for r in rows
    ]
    found.reverse()
    return found


async def purge_predictions(*, session: Session, before: dt.datetime, limit: int) -> int:
    """Delete up to `limit` of the oldest rows created before `before`; return how many."""
    oldest = (
        select(PredictionLogRow.id)
        .where(PredictionLogRow.created_at < before)
        .order_by(PredictionLogRow.created_at)
        .limit(limit)
    )
    ids = list((await session.execute(oldest)).scalars())
    if not ids:
        return 0
    await session.execute(delete(PredictionLogRow).where(PredictionLogRow.id.in_(ids)))
    return len(ids)


def _aware(value: dt.datetime) -> dt.datetime:
    # SQLite stores datetimes without an offset; they were written in UTC.
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
