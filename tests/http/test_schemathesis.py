"""The API contract: schemathesis runs over the whole OpenAPI document of a real server.

One `modelserve serve --registry` process with auth on, an admin API key, the registry and
three models (JSON in and out, raw bytes in, non-finite numbers out), and `schemathesis run`
with every check and every phase (examples, coverage, fuzzing, stateful) against its
`/openapi.json`. Any response the document does not describe fails the test, with
schemathesis's report. The command is in docs/development.md ("API contract").
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.registry.server import REPO, registry_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# Models whose every schema-valid input is answered: the contract is the server's. (`Summer`
# rejects negative numbers with ItemError, a model's own rule that its schema does not state.)
TARGETS = [f"tests/http/services.py:{name}" for name in ("Upper", "NotFinite", "Checksum")]
ADMIN, PASSWORD = "contract-admin", "a contract test password 1"
SEED = 20261207
MAX_EXAMPLES = 25
# Wall-clock budget of the run itself (the fuzzing and stateful phases stop at it); the whole
# test, server start included, stays well within the 3 minutes it is allowed.
MAX_TIME_S = 100
RUN_TIMEOUT_S = 170
REVOKE_KEY_OPERATION = "revoke_key_v1_keys__key_id__delete"

SERVER_ENV = {
    "MODELSERVE_AUTH__ENABLED": "true",
    # The admin and key are made below, as `modelserve users` / `keys` would in production.
    "MODELSERVE_AUTH__DEV_BOOTSTRAP": "false",
    "MODELSERVE_AUTH__ARGON2_MEMORY_KIB": "64",
    "MODELSERVE_AUTH__ARGON2_TIME_COST": "1",
    # Fuzzing logs in and creates keys thousands of times: limits that high are never hit, so
    # every answer comes from the route under test rather than from the limiter.
    "MODELSERVE_AUTH__LOGIN_RATE_LIMIT": "1000000/minute",
    "MODELSERVE_AUTH__LOGIN_IP_RATE_LIMIT": "1000000/minute",
    "MODELSERVE_AUTH__KEY_CREATE_RATE_LIMIT": "1000000/minute",
    # A batch cannot fill a model's whole queue (1024): a generated batch of the largest size
    # next to another request would be shed with 503, which is backpressure, not a contract bug.
    "MODELSERVE_HTTP__MAX_BATCH_INPUTS": "64",
}


def _cli(args: list[str], env: dict[str, str], stdin: str = "") -> str:
    result = subprocess.run(
        [sys.executable, "-m", "modelserve", *args],
        input=stdin,
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def admin_key(data_dir: Path) -> str:
    """An admin user and an `admin`-scoped API key in the server's (SQLite) database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
    env |= SERVER_ENV | {"MODELSERVE_DATA_DIR": str(data_dir)}
    _cli(["users", "create-admin", "--username", ADMIN, "--password-stdin"], env, PASSWORD)
    out = _cli(["keys", "create", "--owner", ADMIN, "--name", "contract", "--scope", "admin"], env)
    return out.strip().splitlines()[0]


def schemathesis_command(url: str, key: str) -> list[str]:
    """The run, as docs/development.md gives it."""
    return [
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--seed",
        str(SEED),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--max-time",
        str(MAX_TIME_S),
        # One worker: hypothesis and schemathesis compile regexes and code in threads, and two
        # workers only race for the two cores the server needs too.
        "--workers",
        "1",
        "-H",
        f"Authorization: Bearer {key}",
        # The one operation left out: revoking a key could revoke the one this run
        # authenticates with (the stateful phase finds its id through GET /v1/keys), and every
        # later request would be a 401. (Deleting or demoting oneself is refused with 409.)
        "--exclude-operation-id",
        REVOKE_KEY_OPERATION,
        "--output-truncate",
        "false",
    ]


def test_the_whole_api_matches_its_openapi_document(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    key = admin_key(data_dir)
    with registry_server(tmp_path, targets=TARGETS, env=SERVER_ENV) as server:
        result = subprocess.run(
            schemathesis_command(server.url, key),
            cwd=tmp_path,  # its report and cache stay out of the work tree
            env={k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS_")},
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
        output = result.stdout + result.stderr
        print(output[-2500:])  # the summary, shown with `pytest -s` or `-rP`
        assert result.returncode == 0, f"schemathesis failed:\n{output}\n{server.output()[-4000:]}"
        # A run that tested nothing, or skipped a phase, would pass as well.
        selected = re.search(r"Selected: (\d+)/(\d+)", output)
        assert selected is not None, output
        assert int(selected[1]) == int(selected[2]) - 1, "only the key revocation is left out"
        for phase in ("Coverage", "Fuzzing", "Stateful"):
            assert f"✅ {phase}" in output, output
