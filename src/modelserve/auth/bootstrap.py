"""Development first start: an admin and an API key, so the README's examples work at once.

Only in dev mode, only when the users table is empty, and only in one process when several
workers start together (the unique username decides). The credentials are printed once to the
terminal (stdout, never through logging, so they reach no log pipeline) and written to
`<data_dir>/dev-credentials.json` with mode 0600, which `modelserve keys dev` reads:

    export MODELSERVE_API_KEY=$(modelserve keys dev)
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from modelserve.auth.accounts import new_id, utcnow
from modelserve.auth.audit import AuditEvent, AuditLog, RequestMeta
from modelserve.auth.keys import generate_key, join_scopes
from modelserve.auth.passwords import PasswordHasher
from modelserve.config import Settings
from modelserve.db.engine import Database
from modelserve.db.repos import auth as repo
from modelserve.db.tables.auth import ApiKeyRow, UserRow
from modelserve.errors import ConflictError

DEV_CREDENTIALS_FILE = "dev-credentials.json"
DEV_ADMIN = "admin"
# Enough to run the README, the registry walkthrough (push, promote, roll back) and the batch
# jobs guide locally; never created outside dev mode.
DEV_KEY_SCOPES = ("predict:*", "registry:read", "registry:write", "jobs:read", "jobs:write")


@dataclass(frozen=True, slots=True)
class DevCredentials:
    """What a development first start created. `__repr__` hides the secrets."""

    username: str
    password: str
    api_key: str
    path: Path

    def __repr__(self) -> str:
        return f"DevCredentials(username={self.username!r}, path={str(self.path)!r}, ...)"


async def bootstrap_dev_credentials(
    settings: Settings, *, database: Database, hasher: PasswordHasher, audit: AuditLog
) -> DevCredentials | None:
    """Create the dev admin and key when this is a dev first start; None otherwise."""
    auth = settings.auth
    if settings.mode != "dev" or not auth.enabled or not auth.dev_bootstrap:
        return None
    async with database.session() as session:
        if await repo.count_users(session) > 0:
            return None
    password = secrets.token_urlsafe(18)
    password_hash = await hasher.hash(password)
    key = generate_key()
    now = utcnow()
    user = UserRow(
        id=new_id(),
        username=DEV_ADMIN,
        password_hash=password_hash,
        role="admin",
        is_active=True,
        password_changed_at=now,
        created_at=now,
    )
    row = ApiKeyRow(
        id=new_id(),
        prefix=key.prefix,
        digest=key.digest,
        name="development key",
        owner_id=user.id,
        scopes=join_scopes(DEV_KEY_SCOPES),
        created_at=now,
    )
    meta = RequestMeta(request_id="dev-bootstrap")
    try:
        async with database.session() as session:
            await repo.add_user(session, row=user)
            await repo.add_key(session, row=row)
            await audit.record(
                session, AuditEvent.USER_CREATED, actor=None, meta=meta,
                target_type="user", target_id=user.id, details={"bootstrap": True},
            )  # fmt: skip
            await audit.record(
                session, AuditEvent.KEY_CREATED, actor=None, meta=meta,
                target_type="api_key", target_id=row.id, details={"bootstrap": True},
            )  # fmt: skip
    except ConflictError:
        return None  # another worker process got there first
    path = settings.data_dir / DEV_CREDENTIALS_FILE
    write_private_json(
        path,
        {
            "username": DEV_ADMIN,
            "password": password,
            "api_key": key.key,
            "api_key_scopes": list(DEV_KEY_SCOPES),
        },
    )
    return DevCredentials(DEV_ADMIN, password, key.key, path)


def write_private_json(path: Path, data: dict[str, object]) -> None:
    """Write `data` to `path`, readable by its owner only, replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(data, file, indent=2)
        file.write("\n")
    os.replace(temporary, path)


def announce(credentials: DevCredentials, stream: TextIO | None = None) -> None:
    """Print the dev credentials once, to the terminal (not through logging)."""
    out = stream or sys.stdout
    out.write(
        "\n"
        "  modelserve dev mode: created a local admin and a development API key (shown once)\n"
        f"    admin user : {credentials.username}\n"
        f"    password   : {credentials.password}\n"
        f"    API key    : {credentials.api_key}   (scopes: {', '.join(DEV_KEY_SCOPES)})\n"
        f"  also saved to {credentials.path} (mode 0600). Use it with:\n"
        "    export MODELSERVE_API_KEY=$(modelserve keys dev)\n"
        "\n"
    )
    out.flush()
