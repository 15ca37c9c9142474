"""The prediction log says how the prediction cache answered each logged request.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: existing rows and uncached models read as "not cached".
    op.add_column("prediction_log", sa.Column("cached", sa.String(8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("prediction_log") as batch:
        batch.drop_column("cached")
