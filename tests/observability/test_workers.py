"""R22: 1 000 requests across 2 worker processes count exactly 1 000, also after a worker is
killed and restarted, and the dead worker leaves no live gauges behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelserve.observability import multiprocess
from tests.e2e.server import free_port, kill_tree

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
PREDICT = "/v1/models/{name}/predict"
BODY = {"x": [1.0, 2.0, 3.0]}


class Workers:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log

    def pids(self) -> set[int]:
        """The live worker processes (not multiprocessing's resource tracker)."""
        found = set()
        for child in psutil.Process(self.proc.pid).children():
            try:
                if child.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(
                    child.cmdline()
                ):
                    found.add(child.pid)
            except psutil.NoSuchProcess:
                continue
        return found

    def scrape(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        response = httpx.get(self.url + "/metrics", timeout=10)
        assert response.status_code == 200, response.text
        found: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                found.setdefault(sample.name, []).append((sample.labels, sample.value))
        return found

    def predict_count(self) -> float:
        samples = self.scrape()["modelserve_http_requests_total"]
        return sum(v for labels, v in samples if labels["route"] == PREDICT)

    def wait_ready(self, count: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited:\n" + self.log.read_text()[-4000:])
            if len(self.pids()) == count:
                try:
                    # Several probes, so that both workers have answered one.
                    if all(
                        httpx.get(self.url + "/readyz", timeout=2).status_code == 200
                        for _ in range(6)
                    ):
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        raise RuntimeError("workers not ready:\n" + self.log.read_text()[-4000:])


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
    env.update(
        {
            multiprocess.MULTIPROC_ENV: str(metrics_dir),
            "OBS_TEST_DATA_DIR": str(tmp_path / "data"),
            "PYTHONPATH": str(ROOT),
        }
    )
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "tests.observability.worker_app:build",
                "--factory",
                "--workers",
                "2",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Workers(proc, f"http://127.0.0.1:{port}", log)
    try:
        server.wait_ready(2)
        yield server
    finally:
        kill_tree(proc)


async def send(url: str, count: int) -> None:
    # Fresh connections, many at once, so the kernel hands them to both workers.
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=20) as client:
        semaphore = asyncio.Semaphore(32)

        async def one() -> None:
            async with semaphore:
                response = await client.post("/v1/models/scorer/predict", json=BODY)
                assert response.status_code == 200, response.text

        await asyncio.gather(*(one() for _ in range(count)))


def settle() -> None:
    # Workers push their counts to the shared files every 0.25 s.
    time.sleep(1.5)


def test_counts_are_exact_across_workers_and_restarts(workers: Workers) -> None:
    asyncio.run(send(workers.url, 1000))
    settle()
    assert workers.predict_count() == 1000
    metrics = workers.scrape()
    rss_pids = {labels["pid"] for labels, _ in metrics["modelserve_process_resident_memory_bytes"]}
    assert rss_pids == {str(p) for p in workers.pids()}  # one series per live worker
    assert sum(v for _, v in metrics["modelserve_replicas"]) == 2  # one replica per worker

    victim = min(workers.pids())
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while victim in workers.pids() or len(workers.pids()) < 2:
        assert time.monotonic() < deadline, "the supervisor did not restart the worker"
        time.sleep(0.1)
    workers.wait_ready(2)
    live = {str(p) for p in workers.pids()}
    deadline = time.monotonic() + 20
    while True:  # until the new worker has started serving and sampled itself
        metrics = workers.scrape()
        rss = metrics["modelserve_process_resident_memory_bytes"]
        rss_pids = {labels["pid"] for labels, _ in rss}
        assert str(victim) not in rss_pids  # the dead worker's live gauges are gone
        if rss_pids == live:
            break
        assert time.monotonic() < deadline, f"{rss_pids} != {live}"
        time.sleep(0.2)
    settle()

    assert workers.predict_count() == 1000  # nothing lost, nothing counted twice
    metrics = workers.scrape()
    assert sum(v for _, v in metrics["modelserve_replicas"]) == 2
    assert sum(v for _, v in metrics["modelserve_queue_depth"]) == 0

    asyncio.run(send(workers.url, 100))
    settle()
    assert workers.predict_count() == 1100
