"""`modelserve db upgrade|downgrade|current`: the database schema, with the packaged migrations.

The database is the one the server would use: `MODELSERVE_DATABASE_URL`, else the SQLite file
in the data directory. PostgreSQL must be upgraded with this command before a new release
starts (the server refuses to start on a schema that is behind); SQLite is upgraded on start.
"""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer

from modelserve.config import Settings
from modelserve.db import migrate
from modelserve.db.engine import redacted

EXIT_FAILED = 1

app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


def _url() -> str:
    return Settings().resolved_database_url()


def _failed(action: str, url: str, exc: Exception) -> NoReturn:
    # Driver messages can be long and multi-line: the first line says what happened.
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    typer.secho(f"modelserve: error: {action} {redacted(url)} failed: {first}", err=True, fg="red")
    raise typer.Exit(EXIT_FAILED)


def _describe(revision: str | None) -> str:
    return revision or "empty (no schema)"


@app.command()
def upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Migrate the database up to REVISION (default: this release's schema)."""
    url = _url()
    try:
        migrate.upgrade(url, revision)
        current = migrate.current_revision(url)
    except Exception as exc:  # the driver's errors vary; all mean "could not migrate"
        _failed("upgrading", url, exc)
    typer.echo(f"{redacted(url)}: at {_describe(current)}")


@app.command()
def downgrade(
    revision: Annotated[
        str, typer.Option(help="Target revision: -1 for one step back, base for empty.")
    ] = "-1",
) -> None:
    """Migrate the database down (one revision by default). Dropped tables lose their data."""
    url = _url()
    try:
        migrate.downgrade(url, revision)
        current = migrate.current_revision(url)
    except Exception as exc:
        _failed("downgrading", url, exc)
    typer.echo(f"{redacted(url)}: at {_describe(current)}")


@app.command()
def current() -> None:
    """Print the database's revision and whether it matches this release (exit 1 if not)."""
    url = _url()
    try:
        revision = migrate.current_revision(url)
    except Exception as exc:
        _failed("reading", url, exc)
    head = migrate.head_revision()
    state = (
        "up to date"
        if revision == head
        else f"not at this release's {head}: run `modelserve db upgrade`"
    )
    typer.echo(f"{redacted(url)}: at {_describe(revision)}, {state}")
    if revision != head:
        raise typer.Exit(EXIT_FAILED)
