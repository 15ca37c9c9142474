"""docs/registry.md runs as written against a real server, under steady load, with no failure.

Every ```bash block of the page runs, in order, in one bash (`set -euo pipefail`) from the
repository root, against `modelserve serve examples/iris.py --registry` (what `make run` serves,
minus the two torch examples). Each `# => text` line must appear in the output, in order. A
background client predicts with `flowers` all along; once it is served, every answer is a 200.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.registry.server import REPO, RegistryServer, registry_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DOC = REPO / "docs" / "registry.md"
BLOCK = re.compile(r"```bash\n(.*?)```", re.DOTALL)
FLOWER = {"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 4.2, "petal_width": 1.5}
# A file-path Service needs the admin scope, which the dev key lacks (effective scopes).
KEY_LINE = (
    "export MODELSERVE_API_KEY=$(modelserve keys create --owner admin --name registry-demo"
    " --scope admin)"
)


def doc_script() -> str:
    blocks = BLOCK.findall(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 6, "docs/registry.md lost its worked example"
    return "\n".join(blocks)


def expected_lines(script: str) -> list[str]:
    return [line.strip()[len("# => ") :] for line in script.splitlines() if "# => " in line]


class SteadyLoad(threading.Thread):
    """Predicts with `flowers` every 20 ms; records every answer after the first 200."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.headers = url, headers
        self.stop = threading.Event()
        self.served: list[tuple[int, str | None]] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30.0, headers=self.headers) as client:
            while not self.stop.is_set():
                try:
                    response = client.post("/v1/models/flowers/predict", json=FLOWER)
                    answer = (response.status_code, response.headers.get("x-model-version"))
                except httpx.HTTPError as exc:
                    answer = (0, repr(exc))
                if self.served or answer[0] == 200:
                    self.served.append(answer)
                time.sleep(0.02)


def auth_headers(server: RegistryServer, data_dir: Path) -> tuple[dict[str, str], bool]:
    """The dev key's header, and whether this server enforces auth at all."""
    enforced = httpx.get(f"{server.url}/v1/registry/models").status_code == 401
    credentials = data_dir / "dev-credentials.json"
    if not credentials.exists():
        return {}, enforced
    key = json.loads(credentials.read_text())["api_key"]
    return {"authorization": f"Bearer {key}"}, enforced


def test_worked_example_runs_as_written(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    script = doc_script()
    # As shipped: auth on, and the dev key written by the first start.
    shipped = {
        "MODELSERVE_AUTH__ENABLED": "true",
        "MODELSERVE_AUTH__ARGON2_MEMORY_KIB": "64",
        "MODELSERVE_AUTH__ARGON2_TIME_COST": "1",
    }
    with registry_server(tmp_path, targets=["examples/iris.py"], env=shipped) as server:
        data_dir = tmp_path / "data"
        headers, enforced = auth_headers(server, data_dir)
        assert enforced
        assert headers
        assert KEY_LINE in script
        port = server.url.rsplit(":", 1)[1]
        script = script.replace("localhost:8000", f"127.0.0.1:{port}")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")},
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "MODELSERVE_URL": server.url,
            "MODELSERVE_DATA_DIR": str(data_dir),
        }
        load = SteadyLoad(server.url, headers)
        load.start()
        try:
            result = subprocess.run(
                ["bash", "-c", "set -euo pipefail\n" + script],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
        finally:
            load.stop.set()
            load.join(timeout=30)
        assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-4000:])

        position = 0
        for line in expected_lines(script):
            found = result.stdout.find(line, position)
            assert found >= 0, f"{line!r} not in output after {position}:\n{result.stdout}"
            position = found + len(line)

        failures = [answer for answer in load.served if answer[0] != 200 or answer[1] is None]
        assert load.served and failures == [], failures[:10]
        versions = [v for _, v in load.served]
        # The load saw version 1, the promotion to 2, and the rollback to 1.
        assert versions[0] == "1" and versions[-1] == "1" and "2" in versions
