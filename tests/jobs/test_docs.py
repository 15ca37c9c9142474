"""docs/jobs.md runs as written: its bash blocks (the worked example, then schedules), in order,
in one bash (`set -euo pipefail`) from the repository root, against `modelserve serve
examples/iris.py` with auth on and its dev key. Each `# => text` line must appear in the output,
in order."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.registry.server import REPO, registry_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DOC = REPO / "docs" / "jobs.md"
BLOCK = re.compile(r"```bash\n(.*?)```", re.DOTALL)


def test_the_guide_runs_as_written(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    blocks = BLOCK.findall(DOC.read_text(encoding="utf-8"))
    # The worked example (CLI, then curl) and the schedules block; the Celery setup is `sh`
    # (it needs RabbitMQ and a worker, which tests/jobs/test_celery.py starts).
    assert len(blocks) == 3, "docs/jobs.md lost its worked example"
    script = "\n".join(blocks)
    shipped = {
        "MODELSERVE_AUTH__ENABLED": "true",
        "MODELSERVE_AUTH__ARGON2_MEMORY_KIB": "64",
        "MODELSERVE_AUTH__ARGON2_TIME_COST": "1",
    }
    with registry_server(tmp_path, targets=["examples/iris.py"], env=shipped) as server:
        port = server.url.rsplit(":", 1)[1]
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")},
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "MODELSERVE_URL": server.url,
            "MODELSERVE_DATA_DIR": str(tmp_path / "data"),
        }
        result = subprocess.run(
            [
                "bash",
                "-c",
                "set -euo pipefail\n" + script.replace("localhost:8000", f"127.0.0.1:{port}"),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-4000:])
    position = 0
    for line in script.splitlines():
        if "# => " not in line:
            continue
        expected = line.strip()[len("# => ") :]
        found = result.stdout.find(expected, position)
        assert found >= 0, f"{expected!r} not in the output after {position}:\n{result.stdout}"
        position = found + len(expected)
