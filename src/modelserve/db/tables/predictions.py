"""The sampled prediction log: inputs and outputs of some predict requests, for analytics.

Rows are written in batches off the request path (`modelserve.observability.predlog`) and
purged after the retention period. Bodies are stored as the JSON text that crossed the wire
(no re-encoding on the hot path); `sample_rate` lets analytics scale counts back up.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from modelserve.db.base import Base, utcnow

# Ids only grow and order the log. SQLite autoincrements INTEGER only.
PREDICTION_ID = BigInteger().with_variant(Integer(), "sqlite")


class PredictionLogRow(Base):
    """One sampled predict request and its answer."""

    __tablename__ = "prediction_log"
    __table_args__ = (
        # Stats read one model's rows in a time window; the purge reads by time alone.
        Index("ix_prediction_log_model_created_at", "model", "created_at"),
        Index("ix_prediction_log_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(PREDICTION_ID, primary_key=True, autoincrement=True)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow
    )
    model: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[str] = mapped_column(String(64), nullable=False)
    request_id: Mapped[str] = mapped_column(String(128), nullable=False)
    # The key or user id that asked (Principal.subject), never a credential.
    principal_id: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[int] = mapped_column(Integer, nullable=False)
    latency_ms: Mapped[float] = mapped_column(Float, nullable=False)
    sample_rate: Mapped[float] = mapped_column(Float, nullable=False)
    error_code: Mapped[str | None] = mapped_column(String(64))
    input_json: Mapped[str | None] = mapped_column(Text)
    output_json: Mapped[str | None] = mapped_column(Text)
    # How the prediction cache answered ("hit", "miss", "shared", "bypass"); None when the
    # model is not cached (docs/cache.md).
    cached: Mapped[str | None] = mapped_column(String(8))
