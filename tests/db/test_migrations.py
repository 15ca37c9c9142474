"""R17: migrations go up, down and up again on SQLite and PostgreSQL, and match the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

import modelserve.db.tables  # noqa: F401  (every table on the metadata)
from modelserve.db import migrate
from modelserve.db.base import Base
from modelserve.errors import SchemaOutdatedError

pytestmark = pytest.mark.services


def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    if migrate.current_revision(database_url):
        migrate.downgrade(database_url, "base")
    migrate.upgrade(database_url)
    assert migrate.current_revision(database_url) == migrate.head_revision()
    migrate.downgrade(database_url, "base")
    assert migrate.current_revision(database_url) is None
    migrate.upgrade(database_url)
    assert migrate.current_revision(database_url) == migrate.head_revision()


def test_models_and_migrations_do_not_drift(database_url: str) -> None:
    migrate.upgrade(database_url)
    engine = create_engine(migrate.sync_url(database_url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], f"models differ from migrations: {diff}"


def test_behind_schema_is_refused_with_the_command_to_run(database_url: str) -> None:
    migrate.upgrade(database_url)
    migrate.downgrade(database_url, "base")
    with pytest.raises(SchemaOutdatedError, match="modelserve db upgrade"):
        migrate.check_at_head(database_url)
    migrate.upgrade(database_url)
    migrate.check_at_head(database_url)
