"""`modelserve keys list` names each key's owner by username, the name `--owner` takes."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelserve.cli.main import app

runner = CliRunner()


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELSERVE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MODELSERVE_DATABASE_URL", raising=False)
    # Cheap hashing: these tests are about what is printed, not about password strength.
    monkeypatch.setenv("MODELSERVE_AUTH__ARGON2_MEMORY_KIB", "64")
    monkeypatch.setenv("MODELSERVE_AUTH__ARGON2_TIME_COST", "1")
    return tmp_path


def make_admin(username: str) -> str:
    made = runner.invoke(
        app,
        ["users", "create-admin", "--username", username, "--password-stdin"],
        input="a long admin passphrase\n",
    )
    assert made.exit_code == 0, made.output
    # "created admin 'alice' (id <id>)"
    return made.stdout.rsplit("(id ", 1)[1].rstrip(")\n")


def make_key(owner: str, name: str) -> None:
    made = runner.invoke(
        app, ["keys", "create", "--owner", owner, "--name", name, "--scope", "predict:*"]
    )
    assert made.exit_code == 0, made.output


def test_keys_list_shows_the_owners_username(cli_env: Path) -> None:
    ids = {name: make_admin(name) for name in ("alice", "bob")}
    make_key("alice", "ci")
    make_key("bob", "batch")
    listed = runner.invoke(app, ["keys", "list"])
    assert listed.exit_code == 0, listed.output
    header, *rows = listed.stdout.strip().splitlines()
    columns = header.split("\t")
    owner_at, name_at = columns.index("OWNER"), columns.index("NAME")
    owners = {row.split("\t")[name_at]: row.split("\t")[owner_at] for row in rows}
    assert owners == {"ci": "alice", "batch": "bob"}
    for user_id in ids.values():
        assert user_id not in listed.stdout
    only_bob = runner.invoke(app, ["keys", "list", "--owner", "bob"])
    assert [row.split("\t")[owner_at] for row in only_bob.stdout.strip().splitlines()[1:]] == [
        "bob"
    ]
