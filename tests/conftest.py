"""Shared test configuration: offline model hubs, and the real services (PostgreSQL, Redis).

Tests that need a real service take one of the fixtures below. When the service does not answer
they skip with the reason, unless MODELSERVE_REQUIRE_SERVICES=1 (set by .ci/run), which turns
the skip into a failure so CI can never go green without them.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# The test kit's fixtures (`modelserve_client`), as a model author's conftest enables them.
pytest_plugins = ["modelserve.testing.plugin"]

# Model libraries must never reach out to a hub from tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Apps and servers started by tests keep their SQLite file and caches out of the work tree.
_DATA_DIR = tempfile.mkdtemp(prefix="modelserve-tests-")
os.environ.setdefault("MODELSERVE_DATA_DIR", _DATA_DIR)
atexit.register(shutil.rmtree, _DATA_DIR, True)
# Serving tests run without authentication; tests/auth turns it on with explicit settings, and
# tests that check the product as shipped (README, registry docs) turn it on for themselves.
os.environ.setdefault("MODELSERVE_AUTH__ENABLED", "false")

POSTGRES_HOST, POSTGRES_PORT = "127.0.0.1", 5432
POSTGRES_ADMIN_URL = os.environ.get(
    "MODELSERVE_TEST_POSTGRES_URL", f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/test"
)
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
# Tests use Redis logical databases 8-15, one per xdist-free run, flushed after each test.
REDIS_TEST_DB = int(os.environ.get("MODELSERVE_TEST_REDIS_DB", "13"))


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or fail under MODELSERVE_REQUIRE_SERVICES=1) when a service does not answer."""
    if _answers(host, port):
        return
    reason = f"{name} is not answering on {host}:{port}"
    if os.environ.get("MODELSERVE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}, and MODELSERVE_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test session, dropped at the end."""
    require_service("PostgreSQL", POSTGRES_HOST, POSTGRES_PORT)
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"modelserve_test_{uuid.uuid4().hex[:12]}"
    admin = make_url(POSTGRES_ADMIN_URL)
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis URL on a test-only logical database, flushed before and after the test."""
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    import redis

    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_TEST_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs twice: on a SQLite file and on the real PostgreSQL.

    The PostgreSQL database is shared by the session: tests must not assume it is empty, or
    must reset it themselves (see `modelserve.db.migrate.downgrade`).
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'modelserve.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
