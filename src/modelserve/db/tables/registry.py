"""Tables of the model registry: models, immutable versions and their files, aliases, traffic.

A version never changes once written (only `trusted` may be set by an admin). Aliases are the
one mutable pointer per (model, name); every move is also written to `registry_alias_events`,
which is what `rollback` walks back. `registry_state.generation` grows with every registry
write: server processes poll it to notice changes made elsewhere, and bumping it first in each
write transaction serializes registry writers (a row lock on PostgreSQL, the write lock on SQLite).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from modelserve.db.base import Base, Timestamped, utcnow

ROW_ID = BigInteger().with_variant(Integer(), "sqlite")


class RegistryModelRow(Timestamped, Base):
    """A registered model name and who owns it."""

    __tablename__ = "registry_models"

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), unique=True, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    # The user whose objects these are (None: created with auth disabled, visible to admins).
    owner_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_by: Mapped[str | None] = mapped_column(String(128))
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow
    )


class RegistryVersionRow(Timestamped, Base):
    """One immutable version of a model: code reference, metadata and schemas."""

    __tablename__ = "registry_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(
        ForeignKey("registry_models.id", ondelete="CASCADE"), nullable=False, index=True
    )
    version: Mapped[str] = mapped_column(String(64), nullable=False)
    # Creation order within the model: lists sort by it and automatic numbers follow it.
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    service: Mapped[str] = mapped_column(String(1100), nullable=False)
    framework: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    input_schema: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    output_schema: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    trusted: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_by: Mapped[str | None] = mapped_column(String(128))


class RegistryFileRow(Base):
    """One artifact file of a version: its path inside the version and its blob."""

    __tablename__ = "registry_files"
    __table_args__ = (UniqueConstraint("version_id", "path"),)

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("registry_versions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    path: Mapped[str] = mapped_column(String(1024), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    format: Mapped[str] = mapped_column(String(16), nullable=False)


class RegistryAliasRow(Base):
    """A named pointer (production, staging, ...) from a model to one of its versions."""

    __tablename__ = "registry_aliases"

    model_id: Mapped[int] = mapped_column(
        ForeignKey("registry_models.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("registry_versions.id", ondelete="CASCADE"), nullable=False
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow
    )
    updated_by: Mapped[str | None] = mapped_column(String(128))


class RegistryAliasEventRow(Timestamped, Base):
    """One alias move: set, rollback or delete. `undone` marks sets a rollback reverted."""

    __tablename__ = "registry_alias_events"
    __table_args__ = (Index("ix_registry_alias_events_lookup", "model_id", "alias", "id"),)

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(
        ForeignKey("registry_models.id", ondelete="CASCADE"), nullable=False
    )
    alias: Mapped[str] = mapped_column(String(63), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    version_id: Mapped[int | None] = mapped_column(
        ForeignKey("registry_versions.id", ondelete="CASCADE")
    )
    previous_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("registry_versions.id", ondelete="CASCADE")
    )
    undone: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_by: Mapped[str | None] = mapped_column(String(128))


class RegistryTrafficRow(Base):
    """A model's canary and shadow settings; the primary is whatever its serve alias names."""

    __tablename__ = "registry_traffic"

    model_id: Mapped[int] = mapped_column(
        ForeignKey("registry_models.id", ondelete="CASCADE"), primary_key=True
    )
    # [[version, percent], ...]: versions by label (they never change or disappear).
    canary: Mapped[list[Any]] = mapped_column(JSON, nullable=False, default=list)
    sticky: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    shadow_version: Mapped[str | None] = mapped_column(String(64))
    shadow_percent: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow
    )
    updated_by: Mapped[str | None] = mapped_column(String(128))


class RegistryStateRow(Base):
    """One row (id 1): the registry's change counter."""

    __tablename__ = "registry_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generation: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
