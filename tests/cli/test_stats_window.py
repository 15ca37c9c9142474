"""`modelserve stats --window`: the help states the range the server accepts, and the command
refuses a window outside it before sending anything."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from modelserve.cli.main import app
from modelserve.errors import InvalidInputError
from modelserve.observability.stats import parse_window

runner = CliRunner()


def unused_url() -> str:
    """A URL nothing listens on: a command that sends anything fails with 'cannot connect'."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_help_states_the_range_the_server_enforces() -> None:
    result = runner.invoke(app, ["stats", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0
    assert "from 1m to 30d" in " ".join(result.output.split())
    # The bounds the help names are the server's own (observability/stats.py decides the 422).
    for inside in ("1m", "60s", "30d", "720h"):
        parse_window(inside)
    for outside in ("59s", "20s", "31d", "721h"):
        with pytest.raises(InvalidInputError):
            parse_window(outside)


@pytest.mark.parametrize("window", ["20s", "59s", "31d", "nope", "1y"])
def test_a_window_out_of_range_is_refused_before_the_request(window: str) -> None:
    result = runner.invoke(app, ["stats", "iris", "--window", window, "--url", unused_url()])
    assert result.exit_code == 2, result.output
    assert "cannot connect" not in result.output
    assert result.output.startswith(f"modelserve: error: --window {window}: window must be")


def test_a_window_in_range_is_sent() -> None:
    # Gets past the check and tries the server (nothing there: exit 1, 'cannot connect').
    result = runner.invoke(app, ["stats", "iris", "--window", "1m", "--url", unused_url()])
    assert result.exit_code == 1 and "cannot connect" in result.output
