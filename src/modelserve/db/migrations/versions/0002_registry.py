"""Registry: models, versions, files, aliases and their history, traffic, change counter.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _created_at() -> sa.Column[object]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )


def _fk(column: str, table: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column],
        [f"{target}.id"],
        name=f"fk_{table}_{column}_{target}",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "registry_models",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("owner_id", sa.String(64), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_registry_models"),
        sa.UniqueConstraint("name", name="uq_registry_models_name"),
    )
    op.create_index("ix_registry_models_owner_id", "registry_models", ["owner_id"])
    op.create_table(
        "registry_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_state"),
    )
    op.bulk_insert(
        sa.table("registry_state", sa.column("id", sa.Integer()), sa.column("generation")),
        [{"id": 1, "generation": 0}],
    )
    op.create_table(
        "registry_traffic",
        sa.Column("model_id", ROW_ID, nullable=False),
        sa.Column("canary", sa.JSON(), nullable=False),
        sa.Column("sticky", sa.Boolean(), nullable=False),
        sa.Column("shadow_version", sa.String(64), nullable=True),
        sa.Column("shadow_percent", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=True),
        _fk("model_id", "registry_traffic", "registry_models"),
        sa.PrimaryKeyConstraint("model_id", name="pk_registry_traffic"),
    )
    op.create_table(
        "registry_versions",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("model_id", ROW_ID, nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(1100), nullable=False),
        sa.Column("framework", sa.String(64), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("input_schema", sa.JSON(), nullable=False),
        sa.Column("output_schema", sa.JSON(), nullable=False),
        sa.Column("trusted", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
        _created_at(),
        _fk("model_id", "registry_versions", "registry_models"),
        sa.PrimaryKeyConstraint("id", name="pk_registry_versions"),
        sa.UniqueConstraint("model_id", "version", name="uq_registry_versions_model_id"),
    )
    op.create_index("ix_registry_versions_model_id", "registry_versions", ["model_id"])
    op.create_table(
        "registry_alias_events",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("model_id", ROW_ID, nullable=False),
        sa.Column("alias", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("version_id", ROW_ID, nullable=True),
        sa.Column("previous_version_id", ROW_ID, nullable=True),
        sa.Column("undone", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
        _created_at(),
        _fk("model_id", "registry_alias_events", "registry_models"),
        _fk("previous_version_id", "registry_alias_events", "registry_versions"),
        _fk("version_id", "registry_alias_events", "registry_versions"),
        sa.PrimaryKeyConstraint("id", name="pk_registry_alias_events"),
    )
    op.create_index(
        "ix_registry_alias_events_lookup", "registry_alias_events", ["model_id", "alias", "id"]
    )
    op.create_table(
        "registry_aliases",
        sa.Column("model_id", ROW_ID, nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("version_id", ROW_ID, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=True),
        _fk("model_id", "registry_aliases", "registry_models"),
        _fk("version_id", "registry_aliases", "registry_versions"),
        sa.PrimaryKeyConstraint("model_id", "name", name="pk_registry_aliases"),
    )
    op.create_table(
        "registry_files",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("version_id", ROW_ID, nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        _fk("version_id", "registry_files", "registry_versions"),
        sa.PrimaryKeyConstraint("id", name="pk_registry_files"),
        sa.UniqueConstraint("version_id", "path", name="uq_registry_files_version_id"),
    )
    op.create_index("ix_registry_files_version_id", "registry_files", ["version_id"])


def downgrade() -> None:
    op.drop_index("ix_registry_files_version_id", table_name="registry_files")
    op.drop_table("registry_files")
    op.drop_table("registry_aliases")
    op.drop_index("ix_registry_alias_events_lookup", table_name="registry_alias_events")
    op.drop_table("registry_alias_events")
    op.drop_index("ix_registry_versions_model_id", table_name="registry_versions")
    op.drop_table("registry_versions")
    op.drop_table("registry_traffic")
    op.drop_table("registry_state")
    op.drop_index("ix_registry_models_owner_id", table_name="registry_models")
    op.drop_table("registry_models")
