"""Measure how long `modelserve serve` takes to exit after SIGTERM (R1) and to replace a killed
worker (R3). A measuring script, not a test: it prints figures for docs/reliability.md.

    .venv/bin/python scripts/shutdown_timing.py            # every scenario, 3 runs each
    .venv/bin/python scripts/shutdown_timing.py --runs 5 --only busy

Scenarios (tests/e2e/services.py, auth off, --graceful-timeout 2):
  idle     nothing in flight
  r1       50 requests in one 1.5 s batch (`sleeper`), SIGTERM while it runs
  busy     4 requests sleeping 5 s on `gate` (2 running, 2 queued; longer than the
           graceful timeout), SIGTERM
  worker   --workers 2, a request every 50 ms, SIGKILL one worker: seconds until its
           replacement logs "Application startup complete", and requests that failed
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.server import SERVICES, free_port  # noqa: E402

GRACEFUL_S = 2.0
STARTED = "Application startup complete"


def start(tmp: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    log = tmp / f"server-{port}.log"
    env = {**os.environ, "MODELSERVE_AUTH__ENABLED": "false", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "modelserve", "serve", str(SERVICES), "--port", str(port)]
    command += ["--graceful-timeout", str(GRACEFUL_S), *extra]
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 (our own command line, no shell)
            command, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return proc, url, log
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start:\n" + log.read_text()[-3000:])


def fire(url: str, path: str, body: dict[str, object], count: int) -> list[threading.Thread]:
    def one() -> None:
        with contextlib.suppress(httpx.TransportError):
            httpx.post(url + path, json=body, timeout=30)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def time_exit(proc: subprocess.Popen[bytes]) -> float:
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    return time.monotonic() - sent


def shutdown(tmp: Path, scenario: str) -> float:
    proc, url, _ = start(tmp)
    try:
        if scenario == "r1":
            fire(url, "/v1/models/sleeper/predict", {"seconds": 1.5}, 50)
            time.sleep(0.6)
        elif scenario == "busy":
            fire(url, "/v1/models/gate/predict", {"seconds": 5.0}, 4)
            time.sleep(0.6)
        return time_exit(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def worker_restart(tmp: Path) -> tuple[float, int, int]:
    proc, url, log = start(tmp, "--workers", "2")
    stop = threading.Event()
    failed = ok = 0

    def steady() -> None:
        nonlocal failed, ok
        with httpx.Client(base_url=url, timeout=5) as client:
            while not stop.is_set():
                try:
                    response = client.post("/v1/models/echo/predict", json={"values": [1.0]})
                    ok += response.status_code == 200
                    failed += response.status_code != 200
                except httpx.TransportError:
                    failed += 1
                time.sleep(0.05)

    try:
        deadline = time.monotonic() + 60
        while log.read_text().count(STARTED) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        load = threading.Thread(target=steady, daemon=True)
        load.start()
        time.sleep(1.0)
        workers = [p for p in psutil.Process(proc.pid).children() if _is_worker(p)]
        started_before = log.read_text().count(STARTED)
        killed = time.monotonic()
        workers[0].kill()
        while log.read_text().count(STARTED) <= started_before:
            if time.monotonic() - killed > 60:
                raise RuntimeError("no replacement worker:\n" + log.read_text()[-3000:])
            time.sleep(0.02)
        replaced = time.monotonic() - killed
        text = log.read_text()
        for line in text.splitlines():
            if "Child process" in line or "Started server process" in line:
                print("   ", line[:110])
        time.sleep(1.0)
        stop.set()
        load.join()
        return replaced, ok, failed
    finally:
        os.killpg(proc.pid, signal.SIGKILL)


def _is_worker(process: psutil.Process) -> bool:
    # The supervisor's children also include multiprocessing's resource tracker.
    return any("spawn_main" in part for part in process.cmdline())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["idle", "r1", "busy", "worker"], action="append")
    args = parser.parse_args()
    scenarios = args.only or ["idle", "r1", "busy", "worker"]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for scenario in scenarios:
            figures = []
            for _ in range(args.runs):
                if scenario == "worker":
                    replaced, ok, failed = worker_restart(tmp)
                    figures.append(replaced)
                    print(f"worker: replaced in {replaced:.2f} s; {ok} ok, {failed} failed")
                else:
                    figures.append(shutdown(tmp, scenario))
                    print(f"{scenario}: exit {figures[-1]:.2f} s after SIGTERM")
            print(
                f"== {scenario}: min {min(figures):.2f} median {statistics.median(figures):.2f}"
                f" max {max(figures):.2f} s (graceful timeout {GRACEFUL_S} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
