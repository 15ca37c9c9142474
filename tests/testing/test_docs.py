"""docs/testing.md runs: its conftest and test file, beside the README's my_model.py, pass."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```python\n# (?P<name>[\w.]+\.py)\n(?P<code>.*?)```", re.DOTALL)
# A plain pytest, as a model author has it: none of this project's plugins.
PLAIN = ("-p", "no:cacheprovider", "-p", "no:asyncio", "-p", "no:timeout")
MODEL = re.compile(r"```python\n(?P<code># my_model\.py[^\n]*\n.*?)```", re.DOTALL)


def test_the_documented_test_file_passes(tmp_path: Path) -> None:
    files = {
        m["name"]: m["code"] for m in BLOCK.finditer((ROOT / "docs" / "testing.md").read_text())
    }
    assert set(files) == {"conftest.py", "test_my_model.py"}
    model = MODEL.search((ROOT / "README.md").read_text())
    assert model, "the README lost its my_model.py"
    (tmp_path / "my_model.py").write_text(model["code"])
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "MODELSERVE_DATA_DIR": str(tmp_path)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-W",
            "error",
            *PLAIN,
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "5 passed" in run.stdout, run.stdout
