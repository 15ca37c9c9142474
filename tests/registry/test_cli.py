"""`modelserve models ...` against a real `serve --registry`, and `modelserve db ...`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from modelserve.cli.main import app
from modelserve.db import migrate
from tests.registry.server import RegistryServer, registry_server

runner = CliRunner()
SERVICE = "tests/registry/services.py:Scaled"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with registry_server(tmp_path_factory.mktemp("cli-registry")) as running:
        yield running


def cli(server: RegistryServer, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "--url", server.url])
    return result.exit_code, result.stdout, result.stderr


def version_dir(tmp_path: Path, scale: float) -> Path:
    folder = tmp_path / f"v{scale:g}"
    (folder / "extra").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"scale": scale}))
    (folder / "extra" / "notes.txt").write_text("trained on Tuesday\n")
    (folder / ".DS_Store").write_bytes(b"\x00junk")  # hidden: skipped
    return folder


def served_version(server: RegistryServer, name: str) -> str:
    response = httpx.post(f"{server.url}/v1/models/{name}/predict", json={"x": 2})
    assert response.status_code == 200, response.text
    return response.headers["x-model-version"]


def test_push_promote_traffic_rollback(server: RegistryServer, tmp_path: Path) -> None:
    code, out, err = cli(
        server,
        "models", "push", "demo", str(version_dir(tmp_path, 1)),
        "--service", SERVICE, "--framework", "numpy", "--metric", "mse=0.1",
    )  # fmt: skip
    assert code == 0, err
    assert "created version 1 (2 file(s))" in out
    assert "uploaded" in err  # the progress bar goes to stderr
    code, out, err = cli(
        server, "models", "push", "demo", str(version_dir(tmp_path, 2)), "--service", SERVICE
    )
    assert (code, "created version 2" in out) == (0, True), err

    code, out, _ = cli(server, "models", "list")
    assert code == 0 and "demo" in out and "2" in out
    code, out, _ = cli(server, "models", "versions", "demo")
    assert code == 0 and out.index("2") < out.index("1")

    code, out, err = cli(server, "models", "promote", "demo", "1")
    assert (code, out.strip()) == (0, "demo: production -> 1"), err
    assert served_version(server, "demo") == "1"

    code, out, err = cli(server, "models", "traffic", "demo", "--canary", "2:50", "--sticky")
    assert code == 0, err
    assert "canary 2:50%" in out and "sticky" in out

    code, out, err = cli(server, "models", "promote", "demo", "2")
    assert (code, out.strip()) == (0, "demo: production -> 2 (was 1)"), err
    assert served_version(server, "demo") == "2"

    code, out, err = cli(server, "models", "rollback", "demo")
    assert (code, out.strip()) == (0, "demo: production -> 1 (rolled back from 2)"), err
    assert served_version(server, "demo") == "1"

    code, out, _ = cli(server, "models")  # bare: what the server serves
    assert code == 0 and "demo" in out and "ready" in out
    code, out, _ = cli(server, "models", "--json")
    assert code == 0 and any(m["name"] == "demo" for m in json.loads(out)["data"])


def test_cli_errors_are_clear(server: RegistryServer, tmp_path: Path) -> None:
    code, _, err = cli(server, "models", "traffic", "demo", "--canary", "two:ten")
    assert code == 2 and "VERSION:PERCENT" in err
    code, _, err = cli(server, "models", "traffic", "demo")
    assert code == 2
    code, _, err = cli(server, "models", "promote", "nope", "1")
    assert code == 1 and "404" in err
    code, _, err = cli(
        server, "models", "push", "demo", str(tmp_path / "missing"), "--service", SERVICE
    )
    assert code == 2 and "no such file" in err
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "model.safetensors").write_bytes(b"\x80\x04\x95 not really")
    code, _, err = cli(server, "models", "push", "demo", str(pickled), "--service", SERVICE)
    assert code == 1 and "422" in err


@pytest.mark.services
def test_db_commands(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSERVE_DATABASE_URL", database_url)
    migrate.upgrade(database_url)
    migrate.downgrade(database_url, "base")
    result = runner.invoke(app, ["db", "current"])
    assert result.exit_code == 1 and "modelserve db upgrade" in result.stdout
    result = runner.invoke(app, ["db", "upgrade"])
    head = migrate.head_revision()
    assert result.exit_code == 0 and f"at {head}" in result.stdout
    assert "up to date" in runner.invoke(app, ["db", "current"]).stdout
    result = runner.invoke(app, ["db", "downgrade"])
    assert result.exit_code == 0
    assert migrate.current_revision(database_url) != head
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    assert migrate.current_revision(database_url) == head


def test_db_command_on_an_unreachable_database_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSERVE_DATABASE_URL", "postgresql://nobody:secret@127.0.0.1:9/x")
    result = runner.invoke(app, ["db", "current"])
    assert result.exit_code == 1
    assert "secret" not in result.stdout + result.stderr
