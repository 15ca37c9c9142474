"""Redis down and back (R9) and PostgreSQL down and back (R10) under a serving server.

Each scenario runs its own Redis or PostgreSQL (tests/faults/backends.py) so the machine's
shared services are never touched.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.faults.backends import own_postgres, own_redis
from tests.faults.common import serve
from tests.faults.outcomes import record

# A request that takes longer than this during an outage counts as hanging.
HANG_S = 5.0
RECOVER_WITHIN_S = 10.0


def _credentials(tmp: Path) -> dict[str, str]:
    found = json.loads((tmp / ".modelserve" / "dev-credentials.json").read_text())
    return {"api_key": found["api_key"], "username": found["username"],
            "password": found["password"]}  # fmt: skip


async def _timed(call: object) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        response = await call  # type: ignore[misc]
        status = response.status_code
    except httpx.HTTPError:
        status = 0
    return status, time.perf_counter() - started


async def _recovery(check: object, timeout_s: float) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if await check():  # type: ignore[operator]
            return time.perf_counter() - started
        await asyncio.sleep(0.1)
    return float("inf")


def _auth_env(extra: dict[str, str]) -> dict[str, str]:
    return {
        "MODELSERVE_AUTH__ENABLED": "true",
        "MODELSERVE_AUTH__ARGON2_MEMORY_KIB": "1024",
        "MODELSERVE_AUTH__ARGON2_TIME_COST": "1",
        **extra,
    }


async def test_r9_redis_down_and_back(tmp_path: Path) -> None:
    with own_redis() as redis:
        env = _auth_env(
            {
                "MODELSERVE_REDIS_URL": redis.url,
                "MODELSERVE_AUTH__RATE_LIMITS": '{"predict": "10000/second"}',
            }
        )
        with serve(tmp_path, env=env) as server:
            creds = _credentials(tmp_path)
            headers = {"authorization": f"Bearer {creds['api_key']}"}
            login = {"username": creds["username"], "password": creds["password"]}
            async with server.async_client(headers=headers, timeout=HANG_S * 2) as client:
                predict = lambda: client.post("/v1/models/doubler/predict", json={"x": 1})  # noqa: E731
                token = lambda: client.post("/v1/auth/token", data=login)  # noqa: E731
                assert (await predict()).status_code == 200
                assert (await token()).status_code == 200
                redis.kill()
                during_predict = [await _timed(predict()) for _ in range(20)]
                during_login = [await _timed(token()) for _ in range(3)]
                redis.start()

                async def login_works() -> bool:
                    return (await token()).status_code == 200

                recovered_s = await _recovery(login_works, RECOVER_WITHIN_S * 2)
    predict_ok = sum(1 for status, _ in during_predict if status == 200)
    login_statuses = sorted({status for status, _ in during_login})
    slowest = max(s for _, s in during_predict + during_login)
    passed = (
        predict_ok == len(during_predict)
        and all(s in (429, 503) for s in login_statuses)
        and slowest < HANG_S
        and recovered_s <= RECOVER_WITHIN_S
    )
    record(
        "R9 Redis (rate limits) down and back",
        load="20 predicts and 3 logins during the outage",
        lost=f"{len(during_predict) - predict_ok} of {len(during_predict)} predicts",
        figure=(
            f"login during outage {login_statuses} (fails closed); slowest {slowest * 1000:.0f} ms;"
            f" recovered in {recovered_s:.1f} s"
        ),
        passed=passed,
    )
    assert predict_ok == len(during_predict), during_predict
    assert all(s in (429, 503) for s in login_statuses), login_statuses
    assert slowest < HANG_S
    assert recovered_s <= RECOVER_WITHIN_S


async def test_r10_postgres_down_and_back(tmp_path: Path) -> None:
    with own_postgres() as postgres:
        env = _auth_env({"MODELSERVE_DATABASE_URL": postgres.url})
        subprocess.run(  # noqa: ASYNC221  (before the server exists: nothing else to run)
            [sys.executable, "-m", "modelserve", "db", "upgrade"],
            env={**os.environ, **env}, cwd=tmp_path, check=True, capture_output=True,
        )  # fmt: skip
        with serve(tmp_path, env=env, args=["--registry"]) as server:
            creds = _credentials(tmp_path)
            headers = {"authorization": f"Bearer {creds['api_key']}"}
            async with server.async_client(headers=headers, timeout=HANG_S * 2) as client:
                predict = lambda: client.post("/v1/models/doubler/predict", json={"x": 1})  # noqa: E731
                assert (await predict()).status_code == 200
                assert (await client.get("/v1/registry/models")).status_code == 200
                postgres.stop()
                started = time.perf_counter()
                during_predict = [await _timed(predict()) for _ in range(20)]
                during_db = [await _timed(client.get("/v1/registry/models")) for _ in range(6)]
                # /readyz stays 200 while the models serve: a database outage must not pull
                # every replica out of the load balancer while predictions still work
                # (docs/reliability.md, R10). Recorded, not asserted.
                readyz = (await client.get("/readyz")).status_code
                outage_s = time.perf_counter() - started
                postgres.start()

                async def db_works() -> bool:
                    return (await client.get("/v1/registry/models")).status_code == 200

                recovered_s = await _recovery(db_works, RECOVER_WITHIN_S * 2)
    predict_ok = sum(1 for status, _ in during_predict if status == 200)
    db_statuses = sorted({s for s, _ in during_db})
    slowest = max(s for _, s in during_predict + during_db)
    passed = (
        predict_ok == len(during_predict)
        and db_statuses == [503]
        and slowest < HANG_S
        and recovered_s <= RECOVER_WITHIN_S
    )
    record(
        "R10 PostgreSQL down and back",
        load=f"20 predicts, 6 registry reads over a {outage_s:.0f} s outage",
        lost=f"{len(during_predict) - predict_ok} of {len(during_predict)} predicts",
        figure=(
            f"DB routes {db_statuses}; slowest {slowest * 1000:.0f} ms; /readyz {readyz}; "
            f"recovered in {recovered_s:.1f} s"
        ),
        passed=passed,
    )
    assert db_statuses == [503], db_statuses
    assert slowest < HANG_S
    assert recovered_s <= RECOVER_WITHIN_S
    assert predict_ok == len(during_predict), during_predict
