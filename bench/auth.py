"""API-key auth for the modelserve server under test: production mode, a real secret, one key.

The benchmark measures modelserve as a production user runs it, so auth is on: a throwaway data
directory gets a migrated database, an admin and a `predict:*` key made with the CLI, and every
server in the run receives the same Authorization header (peers ignore it; the request bytes
stay identical across servers).
"""

from __future__ import annotations

import secrets
import subprocess
import tempfile
from pathlib import Path

from bench.targets import ROOT, project_python


def provision(base_env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(environment for the modelserve server, request headers) with a fresh API key."""
    data_dir = Path(tempfile.mkdtemp(prefix="modelserve-bench-"))
    env = {
        "MODELSERVE_MODE": "prod",
        "MODELSERVE_DATA_DIR": str(data_dir),
        "MODELSERVE_AUTH__ENABLED": "true",
        "MODELSERVE_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
    }
    full = {**base_env, **env}
    cli = [project_python(), "-m", "modelserve"]
    subprocess.run([*cli, "db", "upgrade"], env=full, cwd=ROOT, check=True, capture_output=True)
    subprocess.run(
        [*cli, "users", "create-admin", "--username", "bench", "--password-stdin"],
        input=secrets.token_urlsafe(24) + "\n",
        env=full,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    created = subprocess.run(
        [*cli, "keys", "create", "--owner", "bench", "--name", "bench", "--scope", "predict:*"],
        env=full,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    key = next(line.strip() for line in created.stdout.splitlines() if line.strip())
    return env, {"Authorization": f"Bearer {key}"}
