"""Overload at 10x and 100x of capacity (R6, issue finding 7): excess refused fast with 503 and
Retry-After, admitted requests neither lost nor slowed much.

Inside `make test` the latency criteria are recorded, not asserted (a shared CI box makes them
noise); `make faults` asserts them.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path

import pytest

from tests.e2e.probes import percentile, post_json, raw_burst
from tests.faults.common import serve
from tests.faults.outcomes import FULL, record
from tests.faults.services import CAPACITY, WORK_BATCH, WORK_QUEUE

PATH = "/v1/models/work/predict"
# Criteria of the issue: rejection p99 at 10x and 100x, admitted latency against unloaded.
REJECT_P99_MS = {10: 50.0, 100: 250.0}
ADMITTED_SLOWDOWN = 2.0


def _requests(n: int) -> list[bytes]:
    return [post_json(PATH, json.dumps({"tag": i}).encode()) for i in range(n)]


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(needed, soft)), hard))


@pytest.mark.parametrize("factor", [10, 100])
def test_overload_sheds_the_excess_fast(tmp_path: Path, factor: int) -> None:
    total = factor * CAPACITY
    _raise_fd_limit(total + 256)
    with serve(tmp_path) as server:
        # Unloaded: one batch's worth at once (16 at once can already find the queue full
        # before the collator took the first 8 out of it).
        unloaded = raw_burst(server.address, _requests(WORK_BATCH))
        assert all(r.status == 200 for r, _ in unloaded)
        unloaded_p50 = percentile([s for _, s in unloaded], 50)
        burst = raw_burst(server.address, _requests(total), timeout_s=30.0)
    admitted = [(i, r, s) for i, (r, s) in enumerate(burst) if r.status == 200]
    refused = [(r, s) for r, s in burst if r.status == 503]
    other = [r.status for r, _ in burst if r.status not in (200, 503)]
    wrong = [i for i, r, _ in admitted if json.loads(r.body)["tag"] != i]
    no_retry_after = sum(1 for r, _ in refused if "retry-after" not in r.headers)
    reject_p99_ms = percentile([s for _, s in refused], 99) * 1000 if refused else 0.0
    admitted_p50 = percentile([s for _, _, s in admitted], 50) if admitted else float("inf")
    slowdown = admitted_p50 / unloaded_p50
    timing_ok = reject_p99_ms <= REJECT_P99_MS[factor] and (
        factor != 10 or slowdown <= ADMITTED_SLOWDOWN
    )
    # At least the queue's worth is admitted; how many more depends on how fast batches drain.
    structural_ok = not other and not wrong and no_retry_after == 0 and len(admitted) >= WORK_QUEUE
    record(
        f"R6 overload {factor}x (capacity {CAPACITY}, 50 ms batches)",
        load=f"{total} at once",
        lost=f"{len(other) + len(wrong)} (admitted {len(admitted)}, refused {len(refused)})",
        figure=(
            f"503 p99 {reject_p99_ms:.0f} ms (limit {REJECT_P99_MS[factor]:g}); "
            f"admitted p50 {slowdown:.1f}x unloaded"
        ),
        passed=structural_ok and timing_ok,
    )
    assert not other, f"statuses other than 200/503: {sorted(set(other))}"
    assert not wrong, "an admitted request got another request's answer"
    assert no_retry_after == 0
    assert len(admitted) >= WORK_QUEUE
    if FULL:
        assert timing_ok, (reject_p99_ms, slowdown)
