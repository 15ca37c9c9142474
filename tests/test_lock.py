"""The environment the tests run in is exactly requirements/lock.txt (issue: reproducible installs).

`make test` installs the lock with hashes and no resolution; this test proves the result: every
locked distribution is installed at its locked version. `make test-latest` runs the suite in a
venv of the newest allowed versions instead, where this check does not apply.

The container image installs requirements/runtime.txt: the lock without the development tools,
compiled against the lock as constraints, so the image runs exactly the versions (and files)
the tests ran.
"""

from __future__ import annotations

import os
import re
from importlib import metadata
from pathlib import Path

import pytest

LOCK = Path(__file__).resolve().parents[1] / "requirements" / "lock.txt"
RUNTIME = LOCK.with_name("runtime.txt")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
HASH = re.compile(r"--hash=(sha256:[0-9a-f]{64})")
# Development and test tools: in the lock, never in the image.
DEV_ONLY = (
    "pytest",
    "mypy",
    "ruff",
    "import-linter",
    "playwright",
    "schemathesis",
    "hypothesis",
    "tritonclient",
    "openai",
)


def locked(path: Path = LOCK) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            pins[match[1].lower().replace("_", "-")] = match[2]
    return pins


def hashes(path: Path) -> dict[str, set[str]]:
    """Each pinned distribution's allowed file hashes."""
    found: dict[str, set[str]] = {}
    current = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            current = match[1].lower().replace("_", "-")
            found[current] = set()
        if current:
            found[current].update(HASH.findall(line))
    return found


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


def test_the_image_lock_is_the_lock_without_the_development_tools() -> None:
    runtime, full = locked(RUNTIME), locked()
    differs = {n: (v, full.get(n)) for n, v in runtime.items() if full.get(n) != v}
    assert not differs, f"runtime.txt pins what lock.txt does not: {differs} (make lock)"
    runtime_hashes, full_hashes = hashes(RUNTIME), hashes(LOCK)
    assert all(runtime_hashes[n] and runtime_hashes[n] <= full_hashes[n] for n in runtime)
    for name in ("torch", "uvicorn", "celery", "pyarrow", "sentry-sdk", "hatchling"):
        assert name in runtime, f"the image would lack {name}"
    assert not [n for n in DEV_ONLY if n in runtime]
