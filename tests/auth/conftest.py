"""Fixtures of the auth tests: an app with auth on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.auth.support import AuthClient, serving_auth, settings_for
from tests.http.services import Summer, Upper


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file for tests that do not need to run on both backends."""
    return f"sqlite:///{tmp_path / 'auth.db'}"


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[AuthClient]:
    """An app with auth and two models, on SQLite and on PostgreSQL."""
    with serving_auth(settings_for(database_url, tmp_path), [Summer, Upper]) as c:
        yield c


@pytest.fixture
def lite(sqlite_url: str, tmp_path: Path) -> Iterator[AuthClient]:
    """The same app on SQLite only (for checks that do not depend on the backend)."""
    with serving_auth(settings_for(sqlite_url, tmp_path), [Summer, Upper]) as c:
        yield c
