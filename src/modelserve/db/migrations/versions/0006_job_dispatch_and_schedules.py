"""Batch jobs on Celery and on a schedule: when each chunk was published to the broker (the
outbox), schedules, and the ticks they claimed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "job_chunks", sa.Column("published_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_table(
        "job_schedules",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("owner_id", sa.String(64), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("cron", sa.String(100), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("template", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_job_id", sa.String(32), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name="pk_job_schedules"),
    )
    op.create_index("ix_job_schedules_owner_id", "job_schedules", ["owner_id"])
    op.create_index("ix_job_schedules_state_next_run_at", "job_schedules", ["state", "next_run_at"])
    op.create_table(
        "job_schedule_runs",
        sa.Column("schedule_id", sa.String(32), nullable=False),
        sa.Column("tick", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["job_schedules.id"],
            name="fk_job_schedule_runs_schedule_id_job_schedules",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("schedule_id", "tick", name="pk_job_schedule_runs"),
    )


def downgrade() -> None:
    op.drop_table("job_schedule_runs")
    op.drop_table("job_schedules")
    with op.batch_alter_table("job_chunks") as batch:
        batch.drop_column("published_at")
