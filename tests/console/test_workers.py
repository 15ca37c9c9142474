"""The console under `modelserve serve --workers 2`: a session and its CSRF token hold in every
worker (nothing is kept in a process), and the live figures are the workers' sum."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ServerProcess, launch

pytestmark = pytest.mark.e2e

IRIS = Path(__file__).resolve().parents[2] / "examples" / "iris.py"
FLOWER = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    pytest.importorskip("sklearn")
    tmp = tmp_path_factory.mktemp("console-workers")
    env = {
        "MODELSERVE_AUTH__ENABLED": "true",
        "MODELSERVE_AUTH__ARGON2_MEMORY_KIB": "64",
        "MODELSERVE_AUTH__ARGON2_TIME_COST": "1",
        "MODELSERVE_DATA_DIR": str(tmp / "data"),
        "MODELSERVE_CONSOLE__ENABLED": "true",
    }
    with launch(tmp, target=IRIS, env=env, args=["--workers", "2"]) as running:
        yield running, tmp / "data"


def test_sessions_and_figures_hold_across_workers(server: tuple[ServerProcess, Path]) -> None:
    running, data = server
    credentials = json.loads((data / "dev-credentials.json").read_text())
    # A new connection per request, so the kernel spreads them over both workers.
    browser = httpx.Client(
        base_url=running.base_url, limits=httpx.Limits(max_keepalive_connections=0)
    )
    form = browser.get("/console/login").text
    token = CSRF.search(form)
    assert token is not None
    signed = browser.post(
        "/console/login",
        data={"username": "admin", "password": credentials["password"], "csrf_token": token[1]},
    )
    assert signed.status_code == 303
    # One keep-alive connection: every prediction goes to the same worker, so a page answered
    # by the other one shows them only if it reads the workers' summed metrics.
    with httpx.Client(
        base_url=running.base_url,
        headers={"authorization": f"Bearer {credentials['api_key']}"},
    ) as api:
        for _ in range(40):
            assert api.post("/v1/models/iris/predict", json=FLOWER).status_code == 200
    csrf = CSRF.search(browser.get("/console/keys").text)
    assert csrf is not None
    for index in range(8):
        page = browser.get("/console/")
        assert page.status_code == 200
        row = page.text.split('href="/console/models/iris"')[1].split("</tr>")[0]
        figures = re.findall(r'<td class="num">([^<]+)</td>', row)
        assert float(figures[0]) > 0, figures  # req/s, from both workers' metrics
        created = browser.post(
            "/console/keys",
            data={"name": f"k{index}", "scopes": "predict:*", "csrf_token": csrf[1]},
        )
        assert created.status_code == 200
        assert "ms_" in created.text
    browser.close()
