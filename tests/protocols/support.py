"""A real `modelserve serve` with API-key auth on, as in production, and keys made by the CLI:
what the protocol tests hold the real clients to."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.server import ServerProcess, launch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def cli(env: dict[str, str], *args: str, stdin: str = "") -> str:
    """`modelserve ARGS` in `env`; the first line it prints (asserts exit 0)."""
    result = subprocess.run(
        [sys.executable, "-m", "modelserve", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[0]


@contextmanager
def served_with_keys(
    tmp: Path,
    targets: Sequence[Path],
    scopes: Sequence[str],
    *,
    extra: dict[str, str] | None = None,
) -> Iterator[tuple[ServerProcess, list[str]]]:
    """`targets` served with auth on, and one API key per scope in `scopes` (an admin's,
    made with `modelserve keys create`). Cheap password hashing: the keys are what is tested."""
    settings = {
        "MODELSERVE_DATA_DIR": str(tmp / "data"),
        "MODELSERVE_AUTH__ENABLED": "true",
        "MODELSERVE_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
        "MODELSERVE_AUTH__DEV_BOOTSTRAP": "false",
        "MODELSERVE_AUTH__ARGON2_MEMORY_KIB": "64",
        "MODELSERVE_AUTH__ARGON2_TIME_COST": "1",
        **(extra or {}),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")} | settings
    cli(env, "db", "upgrade")
    cli(env, "users", "create-admin", "--username", "owner", "--password-stdin", stdin="pw-" * 8)
    keys = [
        cli(env, "keys", "create", "--owner", "owner", "--name", f"k{i}", "--scope", scope)
        for i, scope in enumerate(scopes)
    ]
    first, *rest = targets
    with launch(tmp, target=first, env=settings, args=[str(t) for t in rest]) as process:
        yield process, keys
