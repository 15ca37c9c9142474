"""`modelserve keys`: API keys on the server host (see `cli/users.py` for why not over HTTP).

`create` prints the new key once, alone on stdout, so `KEY=$(modelserve keys create ...)`
works; everything else goes to stderr. `dev` prints the development key that a dev-mode first
start wrote to `<data_dir>/dev-credentials.json`.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from modelserve.auth import AuthSystem
from modelserve.auth.bootstrap import DEV_CREDENTIALS_FILE
from modelserve.auth.passwords import normalize_name
from modelserve.cli.users import CLI_META, CLI_OPERATOR, EXIT_FAILED, run
from modelserve.config import Settings
from modelserve.db.repos import auth as repo
from modelserve.errors import ResourceNotFoundError
from modelserve.schemas.auth import ApiKeyCreate, ApiKeyCreated, ApiKeyListPublic

app = typer.Typer(help="Manage API keys on this server's database.", no_args_is_help=True)


async def _owner_id(auth: AuthSystem, username: str) -> str:
    async with auth.database.session() as session:
        user = await repo.get_user_by_username(session, username=normalize_name(username))
    if user is None:
        raise ResourceNotFoundError(f"no user named {username!r}")
    return user.id


async def _usernames(auth: AuthSystem, user_ids: set[str]) -> dict[str, str]:
    """Username by user id, for the owners of listed keys (at most one page's worth)."""
    names: dict[str, str] = {}
    async with auth.database.session() as session:
        for user_id in sorted(user_ids):
            user = await repo.get_user(session, user_id=user_id)
            if user is not None:
                names[user_id] = user.username
    return names


@app.command()
def create(
    owner: Annotated[str, typer.Option(help="Username of the key's owner.")],
    name: Annotated[str, typer.Option(help="What the key is for.")],
    scope: Annotated[
        list[str],
        typer.Option(
            help="predict:*, predict:<model>, registry:read, registry:write, jobs:read,"
            " jobs:write, admin."
        ),
    ],
    expires_in_days: Annotated[
        int | None, typer.Option(help="Never expires when left out.")
    ] = None,
) -> None:
    """Create a key and print it (shown this once)."""

    async def action(auth: AuthSystem) -> ApiKeyCreated:
        data = ApiKeyCreate(
            name=name,
            scopes=scope,
            expires_in_days=expires_in_days,
            owner_id=await _owner_id(auth, owner),
        )
        return await auth.keys.create(data, actor=CLI_OPERATOR, meta=CLI_META)

    created = run(action)
    typer.echo(f"created key {created.id} ({created.prefix}...) for {owner}", err=True)
    typer.echo(created.key)


@app.command("list")
def list_keys(
    owner: Annotated[str | None, typer.Option(help="Only this user's keys.")] = None,
) -> None:
    """List keys (never the keys themselves)."""

    async def action(auth: AuthSystem) -> tuple[ApiKeyListPublic, dict[str, str]]:
        owner_id = await _owner_id(auth, owner) if owner else None
        page = await auth.keys.list(actor=CLI_OPERATOR, owner_id=owner_id, limit=100, offset=0)
        return page, await _usernames(auth, {key.owner_id for key in page.data})

    page, usernames = run(action)
    # Plain lines, one key each, never wrapped: easy to read and to grep or cut.
    typer.echo("ID\tPREFIX\tNAME\tOWNER\tSCOPES\tEXPIRES\tLAST_USED\tREVOKED")
    for key in page.data:
        fields = (
            key.id,
            key.prefix,
            key.name,
            # The name operators know and pass to --owner; the id only if the user is gone.
            usernames.get(key.owner_id, key.owner_id),
            ",".join(key.scopes),
            f"{key.expires_at:%Y-%m-%d}" if key.expires_at else "never",
            f"{key.last_used_at:%Y-%m-%dT%H:%M}" if key.last_used_at else "-",
            "revoked" if key.revoked_at else "-",
        )
        typer.echo("\t".join(fields))
    if page.count > len(page.data):
        typer.echo(f"({page.count - len(page.data)} more not shown)", err=True)


@app.command()
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (from `keys list`).")]) -> None:
    """Revoke a key: every server process refuses it within a second."""
    run(lambda auth: auth.keys.revoke(key_id, actor=CLI_OPERATOR, meta=CLI_META))
    typer.echo(f"revoked {key_id}", err=True)


@app.command()
def dev() -> None:
    """Print the development API key created by a dev-mode first start."""
    path = Settings().data_dir / DEV_CREDENTIALS_FILE
    try:
        key = json.loads(path.read_text("utf-8"))["api_key"]
    except (OSError, ValueError, KeyError, TypeError):
        typer.echo(
            f"error: no development credentials in {path}; they are written on the first"
            " `modelserve serve` in dev mode with an empty database",
            err=True,
        )
        raise typer.Exit(EXIT_FAILED) from None
    typer.echo(key)
