"""The environment the tests run in is exactly requirements/lock.txt (issue: reproducible installs).

`make test` installs the lock with hashes and no resolution; this test proves the result: every
locked distribution is installed at its locked version. `make test-latest` runs the suite in a
venv of the newest allowed versions instead, where this check does not apply.
"""

from __future__ import annotations

import os
import re
from importlib import metadata
from pathlib import Path

import pytest

LOCK = Path(__file__).resolve().parents[1] / "requirements" / "lock.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            pins[match[1].lower().replace("_", "-")] = match[2]
    return pins


def test_the_lock_pins_the_dependencies_that_broke_before() -> None:
    pins = locked()
    assert len(pins) > 100
    assert pins["torch"] == "2.13.0+cpu"  # the local CPU wheel, never a CUDA download
    assert pins["sentry-sdk"].startswith("3.")
    for name in ("uvicorn", "fastapi", "pydantic", "starlette", "sqlalchemy", "hatchling"):
        assert name in pins, f"{name} is not in the lock"


@pytest.mark.skipif(
    os.environ.get("MODELSERVE_TEST_LATEST") == "1", reason="make test-latest: newest versions"
)
def test_every_locked_version_is_the_installed_one() -> None:
    wrong = {}
    for name, version in locked().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong[name] = (version, "missing")
            continue
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"installed versions differ from requirements/lock.txt: {wrong}"
