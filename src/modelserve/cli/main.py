"""The `modelserve` command: `serve` runs a server, `check` tests a model file in-process;
`predict` and `models` talk to a server."""

from __future__ import annotations

from typing import Annotated

import typer

from modelserve import __version__
from modelserve.cli.check import check
from modelserve.cli.client import predict
from modelserve.cli.db import app as db_app
from modelserve.cli.jobs import app as jobs_app
from modelserve.cli.keys import app as keys_app
from modelserve.cli.registry import app as models_app
from modelserve.cli.serve import serve
from modelserve.cli.stats import stats
from modelserve.cli.users import app as users_app
from modelserve.cli.worker import worker

app = typer.Typer(
    name="modelserve",
    help="Serve any Python model as a fast, validated, documented HTTP API.",
    no_args_is_help=True,
    add_completion=False,
    # A traceback's locals could hold an API key; never print them.
    pretty_exceptions_show_locals=False,
)
app.command()(serve)
app.command()(worker)
app.command()(check)
app.command()(predict)
app.add_typer(models_app, name="models")
app.add_typer(db_app, name="db")
app.command()(stats)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(jobs_app, name="jobs")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"modelserve {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Serve any Python model as a fast, validated, documented HTTP API."""


def main() -> None:
    """Console-script entry point (`modelserve = modelserve.cli.main:main`)."""
    app()
