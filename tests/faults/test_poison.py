"""One client's poisoned input must not fail its batch-mates (R25, issue finding 6)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.faults.common import serve
from tests.faults.outcomes import record, scaled
from tests.faults.services import POISON, POISON_BATCH

PATH = "/v1/models/poisoned/predict"


async def test_r25_a_poisoned_item_fails_alone(tmp_path: Path) -> None:
    rounds = scaled(10, 3)
    innocent_failed = 0
    poisoned_statuses: set[int] = set()
    with serve(tmp_path) as server:
        async with server.async_client() as client:
            for _ in range(rounds):
                values = [float(i) for i in range(POISON_BATCH)]
                values[POISON_BATCH // 2] = POISON
                answers = await asyncio.gather(*(client.post(PATH, json={"x": x}) for x in values))
                for x, answer in zip(values, answers, strict=True):
                    if x == POISON:
                        poisoned_statuses.add(answer.status_code)
                    elif answer.status_code != 200 or answer.json() != {"y": 2 * x}:
                        innocent_failed += 1
            metrics = (await client.get("/metrics")).text
    reruns = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("modelserve_batch_isolation") and "_created" not in line
    )
    innocents = rounds * (POISON_BATCH - 1)
    failed_alone = poisoned_statuses and all(s >= 400 for s in poisoned_statuses)
    record(
        "R25 poisoned item in a batch of 16",
        load=f"{rounds} rounds of {POISON_BATCH} concurrent, 1 poisoned each",
        lost=f"{innocent_failed} of {innocents} innocent requests",
        figure=f"poisoned got {sorted(poisoned_statuses)}; isolation re-runs counted {reruns:g}",
        passed=innocent_failed == 0 and bool(failed_alone) and reruns > 0,
    )
    assert innocent_failed == 0
    assert failed_alone, poisoned_statuses
    assert reruns > 0, "no isolation re-run was counted in /metrics"
