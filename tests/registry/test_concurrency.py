"""R5: 8 threads x 50 concurrent register / promote / unload / rollback calls on one model.

Pass: only the documented 404/409 errors, no deadlock (the test's timeout), the server live and
ready afterwards, and exactly 0 or 1 loaded copy, matching what the registry says.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.registry.conftest import reset_registry
from tests.registry.server import registry_server

pytestmark = [pytest.mark.services, pytest.mark.e2e]

THREADS = 8
CALLS = 50
NAME = "contended"
SERVICE = "tests/registry/services.py:Scaled"
EXPECTED = {
    "register": {201, 409},
    "promote": {200},
    "unload": {204, 404},
    "rollback": {200, 409},
}


def prepare_versions(client: httpx.Client) -> None:
    client.post("/v1/registry/models", json={"name": NAME})
    for scale in (1, 2, 3):
        stored = client.post(
            "/v1/registry/uploads",
            params={"path": "config.json"},
            content=json.dumps({"scale": scale}).encode(),
        ).json()["files"][0]
        response = client.post(
            f"/v1/registry/models/{NAME}/versions",
            json={
                "service": SERVICE,
                "files": [{"path": "config.json", "sha256": stored["sha256"]}],
            },
        )
        assert response.status_code == 201, response.text


def storm(url: str, seed: int, results: Counter[tuple[str, int]]) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=60.0) as client:
        for _ in range(CALLS):
            op = rng.choice(list(EXPECTED))
            if op == "register":
                response = client.post("/v1/registry/models", json={"name": NAME})
            elif op == "promote":
                response = client.put(
                    f"/v1/registry/models/{NAME}/aliases/production",
                    json={"version": str(rng.randint(1, 3))},
                )
            elif op == "unload":
                response = client.delete(f"/v1/registry/models/{NAME}/aliases/production")
            else:
                response = client.post(f"/v1/registry/models/{NAME}/rollback")
            results[(op, response.status_code)] += 1


@pytest.mark.timeout(240)
def test_concurrent_register_promote_unload(database_url: str, tmp_path: Path) -> None:
    reset_registry(database_url)
    env = {"MODELSERVE_DATABASE_URL": database_url}
    with registry_server(tmp_path, env=env) as server:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            prepare_versions(client)
        results: Counter[tuple[str, int]] = Counter()
        threads = [
            threading.Thread(target=storm, args=(server.url, seed, results))
            for seed in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(results.values()) == THREADS * CALLS
        # The storm really moved things: models loaded and unloaded many times over.
        assert results[("promote", 200)] > 10 and results[("unload", 204)] > 10, results
        unexpected = {k: v for k, v in results.items() if k[1] not in EXPECTED[k[0]]}
        assert unexpected == {}, (unexpected, server.output()[-4000:])

        with httpx.Client(base_url=server.url, timeout=10.0) as client:
            assert client.get("/livez").status_code == 200
            assert client.get("/readyz").status_code == 200
            alias = client.get(f"/v1/registry/models/{NAME}").json()["aliases"].get("production")
            deadline = time.monotonic() + 30
            while True:  # the last reconcile may still be draining an old version
                deployment = client.get(f"/v1/registry/models/{NAME}/deployment").json()
                loaded = [v["version"] for v in deployment["versions"]]
                if loaded == ([alias] if alias else []) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert loaded == ([alias] if alias else []), deployment
            assert all(v["status"] == "ready" for v in deployment["versions"])
            if alias:
                answer = client.post(f"/v1/models/{NAME}/predict", json={"x": 1})
                assert answer.headers["x-model-version"] == alias
            else:
                assert client.post(f"/v1/models/{NAME}/predict", json={"x": 1}).status_code == 404
