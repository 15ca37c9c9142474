"""docs/cli.md's command reference is generated from the typer app and must match it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from modelserve.cli import reference
from modelserve.cli.main import app

CLI_MD = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def commands(command: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        if not sub.hidden:
            yield from commands(sub, f"{path} {name}")


def test_docs_cli_md_is_up_to_date() -> None:
    current = CLI_MD.read_text("utf-8")
    assert current == reference.replace_region(current, reference.render()), (
        "docs/cli.md's command reference is stale: run "
        "`python -m modelserve.cli.reference --write docs/cli.md`"
    )


def test_every_command_and_option_is_in_the_reference() -> None:
    text = reference.render()
    tree = list(commands(typer.main.get_command(app), "modelserve"))
    # Every group and subcommand: serve, predict, stats, models (+6), db (+3), users, keys (+4).
    assert len(tree) >= 20
    for path, command in tree:
        assert f"### `{path}`" in text, path
        for param in command.params:
            for opt in param.opts if param.param_type_name == "option" else []:
                section = text.split(f"### `{path}`", 1)[1].split("\n### ", 1)[0]
                assert f"| `{opt}" in section, (path, opt)


def test_the_reference_does_not_depend_on_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    first = reference.render()
    monkeypatch.setenv("COLUMNS", "20")
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm-256color")
    assert reference.render() == first
    assert "\x1b[" not in first
    assert all(len(line) < 400 for line in first.splitlines())


def test_check_fails_on_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "cli.md"
    doc.write_text(f"# CLI\n\n{reference.START}\nold text\n{reference.END}\nafter\n")
    assert reference.main(["--check", str(doc)]) == reference.EXIT_STALE
    assert "stale" in capsys.readouterr().err
    assert reference.main(["--write", str(doc)]) == 0
    written = doc.read_text()
    assert "old text" not in written and written.endswith(f"{reference.END}\nafter\n")
    assert "### `modelserve keys revoke`" in written
    assert reference.main(["--check", str(doc)]) == 0


def test_markers_are_required() -> None:
    with pytest.raises(ValueError, match="markers"):
        reference.replace_region("# no markers here\n", "x\n")
    with pytest.raises(ValueError, match="markers"):
        reference.replace_region(f"{reference.END}\n{reference.START}\n", "x\n")
