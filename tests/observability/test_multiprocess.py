"""R22 at the unit level: metrics of several processes add up, survive a killed worker once,
and a dead worker's live gauges disappear (the CLI-level test is in test_workers.py)."""

from __future__ import annotations

import multiprocessing
import os
import signal
from multiprocessing.context import SpawnProcess
from pathlib import Path

import pytest

from modelserve.observability import multiprocess
from tests.observability.mp_worker import serve

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def shared_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "metrics"
    path.mkdir()
    monkeypatch.setenv(multiprocess.MULTIPROC_ENV, str(path))
    return path


def start(requests: int, depth: int) -> tuple[SpawnProcess, object]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    proc = context.Process(target=serve, args=(requests, depth, child))
    proc.start()
    assert parent.poll(60), "worker did not start"
    assert parent.recv() == "ready"
    return proc, parent


def scrape(path: Path) -> dict[str, float]:
    registry = multiprocess.aggregate_registry(str(path))
    values: dict[str, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            key = sample.name
            if "pid" in sample.labels:
                key += f"[pid={sample.labels['pid']}]"
            values[key] = values.get(key, 0.0) + sample.value
    return values


def test_counts_add_up_across_workers_and_survive_a_kill(shared_dir: Path) -> None:
    first, _ = start(requests=600, depth=3)
    second, second_conn = start(requests=400, depth=5)
    try:
        before = scrape(shared_dir)
        assert before["modelserve_http_requests_total"] == 1000
        assert before["modelserve_model_requests_total"] == 1000
        assert before["modelserve_queue_depth"] == 8

        os.kill(first.pid, signal.SIGKILL)  # no chance to clean up after itself
        first.join(10)
        after_kill = scrape(shared_dir)
        # What it answered stays counted; its live queue depth is gone.
        assert after_kill["modelserve_http_requests_total"] == 1000
        assert after_kill["modelserve_queue_depth"] == 5

        restarted, restarted_conn = start(requests=10, depth=1)  # a new pid, a new file
        try:
            after_restart = scrape(shared_dir)
            assert after_restart["modelserve_http_requests_total"] == 1010
            assert after_restart["modelserve_queue_depth"] == 6
        finally:
            restarted_conn.send("exit")  # type: ignore[attr-defined]
            restarted.join(10)

        second_conn.send("exit")  # type: ignore[attr-defined]
        second.join(10)
        final = scrape(shared_dir)
        assert final["modelserve_http_requests_total"] == 1010
        assert final.get("modelserve_queue_depth", 0) == 0
        assert not any(key.startswith("modelserve_process_resident") for key in final)
    finally:
        for proc in (first, second):
            if proc.is_alive():
                proc.kill()
                proc.join(5)


def test_prune_ignores_live_processes_and_removes_dead_ones(shared_dir: Path) -> None:
    (shared_dir / f"gauge_livesum_{os.getpid()}.db").write_bytes(b"")
    (shared_dir / "gauge_livesum_999999999.db").write_bytes(b"")
    (shared_dir / "counter_999999999.db").write_bytes(b"")
    assert multiprocess.prune_dead(str(shared_dir)) == [999999999]
    names = sorted(p.name for p in shared_dir.iterdir())
    assert names == ["counter_999999999.db", f"gauge_livesum_{os.getpid()}.db"]


def test_prepare_makes_a_fresh_directory_per_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(multiprocess.MULTIPROC_ENV, raising=False)
    assert multiprocess.prepare(1) is None
    prepared = multiprocess.prepare(2)
    assert prepared is not None and prepared.owned
    assert os.environ[multiprocess.MULTIPROC_ENV] == str(prepared.path)
    assert prepared.path.is_dir() and not any(prepared.path.iterdir())
    prepared.cleanup()
    assert not prepared.path.exists()
    assert multiprocess.MULTIPROC_ENV not in os.environ


def test_an_operators_directory_is_used_and_kept(shared_dir: Path) -> None:
    prepared = multiprocess.prepare(4)
    assert prepared is not None and prepared.path == shared_dir and not prepared.owned
    prepared.cleanup()
    assert shared_dir.is_dir()
