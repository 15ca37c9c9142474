"""Dev first start (admin + key printed once, saved 0600) and the `users`/`keys` commands."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from modelserve import Settings
from modelserve.auth.bootstrap import announce
from modelserve.cli.main import app as cli
from tests.auth.support import auth_config, build_app
from tests.http.services import Summer


def dev_settings(tmp_path: Path) -> Settings:
    return Settings(
        mode="dev",
        data_dir=tmp_path,
        auth=auth_config(dev_bootstrap=True, jwt_secret=None),
    )


def test_dev_first_start_creates_working_credentials_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = dev_settings(tmp_path)
    app = build_app(settings, [Summer])
    printed: list[str] = []
    app.state.auth._announce = lambda creds: printed.append(_announced(creds))
    with TestClient(app) as client:
        path = tmp_path / "dev-credentials.json"
        assert path.stat().st_mode & 0o777 == 0o600
        saved = json.loads(path.read_text())
        assert saved["username"] == "admin"
        assert saved["api_key"] in printed[0] and saved["password"] in printed[0]
        response = client.post(
            "/v1/models/summer/predict", json={"values": [2]},
            headers={"authorization": f"Bearer {saved['api_key']}"},
        )  # fmt: skip
        assert response.status_code == 200
        login = client.post(
            "/v1/auth/token", data={"username": "admin", "password": saved["password"]}
        )
        assert login.status_code == 200
    # No secret went through logging.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert saved["api_key"] not in logged and saved["password"] not in logged
    # The second start finds users and creates nothing.
    app = build_app(settings, [Summer])
    app.state.auth._announce = lambda creds: printed.append(_announced(creds))
    with TestClient(app):
        pass
    assert len(printed) == 1
    assert json.loads(path.read_text()) == saved


def test_no_bootstrap_in_prod_mode(tmp_path: Path) -> None:
    settings = Settings(
        mode="prod",
        data_dir=tmp_path,
        auth=auth_config(dev_bootstrap=True),
    )
    with TestClient(build_app(settings, [Summer])):
        pass
    assert not (tmp_path / "dev-credentials.json").exists()


def _announced(creds: object) -> str:
    stream = io.StringIO()
    announce(creds, stream)  # type: ignore[arg-type]
    return stream.getvalue()


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELSERVE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MODELSERVE_AUTH__ARGON2_MEMORY_KIB", "64")
    monkeypatch.setenv("MODELSERVE_AUTH__ARGON2_TIME_COST", "1")
    return tmp_path


def test_users_and_keys_commands(cli_env: Path) -> None:
    runner = CliRunner()
    made = runner.invoke(
        cli, ["users", "create-admin", "--username", "Root", "--password-stdin"],
        input="a long admin passphrase\n",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "created admin 'root'" in made.output
    again = runner.invoke(
        cli, ["users", "create-admin", "--username", "root", "--password-stdin"],
        input="a long admin passphrase\n",
    )  # fmt: skip
    assert again.exit_code == 1 and "already exists" in again.output
    weak = runner.invoke(
        cli, ["users", "create-admin", "--username", "x", "--password-stdin"], input="short\n"
    )
    assert weak.exit_code == 1

    created = runner.invoke(
        cli, ["keys", "create", "--owner", "root", "--name", "ci", "--scope", "predict:iris"]
    )
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("ms_")
    listed = runner.invoke(cli, ["keys", "list"])
    assert listed.exit_code == 0 and "predict:iris" in listed.stdout and key not in listed.stdout
    key_id = listed.stdout.split("\n")[1].split()[0]
    assert runner.invoke(cli, ["keys", "revoke", key_id]).exit_code == 0
    assert "\trevoked" in runner.invoke(cli, ["keys", "list", "--owner", "root"]).stdout
    bad = runner.invoke(
        cli, ["keys", "create", "--owner", "nobody", "--name", "x", "--scope", "admin"]
    )
    assert bad.exit_code == 1 and "no user named" in bad.output


def test_keys_dev_prints_the_development_key(cli_env: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(cli, ["keys", "dev"])
    assert missing.exit_code == 1
    (cli_env / "dev-credentials.json").write_text(json.dumps({"api_key": "ms_abc"}))
    shown = runner.invoke(cli, ["keys", "dev"])
    assert shown.exit_code == 0 and shown.stdout.strip() == "ms_abc"
