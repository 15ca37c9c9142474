"""`modelserve users create-admin` without a terminal: one clear line, not click's "Aborted!"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from modelserve.cli.main import app


def test_create_admin_without_a_terminal_points_at_password_stdin(tmp_path: Path) -> None:
    # A real process with stdin from /dev/null: what a script, CI job or `docker exec` without
    # -t gives it. Before the fix the hidden prompt read EOF and click printed "Aborted!".
    env = {**os.environ, "MODELSERVE_DATA_DIR": str(tmp_path)}
    env.pop("MODELSERVE_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "modelserve", "users", "create-admin", "--username", "alice"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "not a terminal" in lines[0] and "--password-stdin" in lines[0]
    assert "Aborted" not in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""
    # Refused before the database was touched: nothing to clean up after a wrong call.
    assert not any(tmp_path.iterdir())


def test_create_admin_reads_password_stdin(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"MODELSERVE_DATA_DIR": str(tmp_path), "MODELSERVE_DATABASE_URL": None}
    made = runner.invoke(
        app,
        ["users", "create-admin", "--username", "alice", "--password-stdin"],
        input="a long admin passphrase\n",
        env=env,
    )
    assert made.exit_code == 0, made.output
    assert "created admin 'alice'" in made.output
    # The same call without --password-stdin under the runner (no terminal either) is refused.
    prompted = runner.invoke(app, ["users", "create-admin", "--username", "bob"], env=env)
    assert prompted.exit_code == 2
    assert "--password-stdin" in prompted.output
