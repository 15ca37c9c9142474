"""`modelserve users`: account administration on the server host.

These commands work directly on the database named by the `MODELSERVE_*` settings (the same
ones the server reads), not through the HTTP API: creating the first admin must work before
anyone can log in. Over HTTP, use the `/v1/users` and `/v1/keys` routes with an admin token.
Passwords are read from a hidden prompt or standard input, never from arguments (which end up
in shell history and `ps`).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError

from modelserve.auth import AuthSystem
from modelserve.auth.audit import RequestMeta
from modelserve.config import Settings
from modelserve.db import migrate
from modelserve.db.engine import Database
from modelserve.errors import ModelserveError
from modelserve.schemas.auth import UserCreate
from modelserve.types import Principal

T = TypeVar("T")
EXIT_FAILED = 1
EXIT_USAGE = 2
NO_TTY_ERROR = (
    "error: standard input is not a terminal, so there is nowhere to prompt for the password; "
    "pipe it in with --password-stdin: "
    "printf '%s\\n' \"$PASSWORD\" | modelserve users create-admin --password-stdin"
)

CLI_META = RequestMeta(request_id="cli")
# The operator at the server's shell: may do everything, owns nothing.
CLI_OPERATOR = Principal(
    kind="anonymous",
    subject="cli",
    owner_id=None,
    role="admin",
    scopes=frozenset({"admin"}),
    rate_key="cli",
)

app = typer.Typer(help="Manage users on this server's database.", no_args_is_help=True)


@asynccontextmanager
async def open_auth(settings: Settings) -> AsyncIterator[AuthSystem]:
    """An AuthSystem on the configured database, migrated (SQLite) or checked (PostgreSQL)."""
    url = settings.resolved_database_url()
    database = Database(url)
    try:
        if database.backend == "sqlite":
            migrate.upgrade(url)
        else:
            migrate.check_at_head(url)
        auth = AuthSystem(settings, database, announce_to=None)
        try:
            yield auth
        finally:
            await auth.close()
    finally:
        await database.dispose()


def run(action: Callable[[AuthSystem], Awaitable[T]]) -> T:
    """Run `action` against the configured database; print ModelserveErrors and exit 1."""

    async def main() -> T:
        async with open_auth(Settings()) as auth:
            return await action(auth)

    try:
        return asyncio.run(main())
    except ModelserveError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(EXIT_FAILED) from None


def read_password(from_stdin: bool) -> str:
    """A new password: one line of stdin, or typed twice at a hidden prompt.

    Without `from_stdin` and without a terminal on stdin (a script, CI, `docker exec` without
    `-t`) the prompt could only fail with click's bare "Aborted!"; this says what to do instead
    and exits 2.
    """
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if sys.stdin is None or not sys.stdin.isatty():
        typer.echo(NO_TTY_ERROR, err=True)
        raise typer.Exit(EXIT_USAGE)
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@app.command("create-admin")
def create_admin(
    username: Annotated[str, typer.Option(help="Login name of the new admin.")] = "admin",
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the password from the first line of standard input (for scripts).",
        ),
    ] = False,
) -> None:
    """Create an admin user: prompts twice for the password, or reads it with --password-stdin."""
    password = read_password(password_stdin)
    try:
        data = UserCreate(username=username, password=password, role="admin")
    except ValidationError as exc:
        first = exc.errors()[0]
        typer.echo(f"error: {'.'.join(map(str, first['loc']))}: {first['msg']}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    user = run(lambda auth: auth.accounts.create_user(data, actor=None, meta=CLI_META))
    typer.echo(f"created admin {user.username!r} (id {user.id})")
