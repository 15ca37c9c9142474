"""A server started on a database whose schema is behind: one line saying what to run, exit 3.

The schema is put at the first migration, as tests/db/test_migrations.py does, in a SQLite
file of the test's own (the shared PostgreSQL database stays untouched), with automatic
migration off: what a PostgreSQL deployment gets by default.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from modelserve.db import migrate
from tests.e2e.server import SERVICES, free_port, launch, server_command

FIRST_REVISION = "0001"


def server_env(data_dir: Path) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
    return {
        **inherited,
        "HF_HUB_OFFLINE": "1",
        "MODELSERVE_AUTH__ENABLED": "false",
        "MODELSERVE_DATA_DIR": str(data_dir),
        "MODELSERVE_DATABASE__AUTO_MIGRATE": "false",
    }


def test_a_schema_behind_stops_the_server_with_one_line(tmp_path: Path) -> None:
    env = server_env(tmp_path)
    url = f"sqlite:///{tmp_path / 'modelserve.db'}"
    migrate.upgrade(url, FIRST_REVISION)
    head = migrate.head_revision()
    assert head != FIRST_REVISION

    for extra in ([], ["--workers", "2"]):
        done = subprocess.run(
            [*server_command(SERVICES, free_port(), 5.0), *extra],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 3, (extra, done.stderr[-4000:])
        output = (done.stdout + done.stderr).strip()
        assert "Traceback" not in output, (extra, output[-4000:])
        assert output.splitlines() == [
            f"modelserve: error: database schema is at {FIRST_REVISION} but this release needs"
            f" {head}; run `modelserve db upgrade` first"
        ], extra
        # Refused before anything was changed.
        assert migrate.current_revision(url) == FIRST_REVISION

    # The command the line names is the fix.
    upgraded = subprocess.run(
        [*server_command(SERVICES, 0, 5.0)[:3], "db", "upgrade"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert upgraded.returncode == 0, upgraded.stderr
    with launch(tmp_path, env={k: v for k, v in env.items() if k.startswith("MODELSERVE_")}) as srv:
        assert srv.client().get("/readyz").status_code == 200
