"""Hostile clients with no credentials (R23, R24): huge headers, and thousands of connections
that never finish their headers, while a well-behaved client keeps predicting.

Inside `make test` the latency figures are recorded, not asserted; `make faults` asserts them.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from tests.faults.common import ServerProcess, serve, steady_load
from tests.faults.outcomes import FULL, record, scaled

MIB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]
LIVEZ_P99_MS = 50.0
RSS_GROWTH_MIB = 50.0


def _rss_mib(server: ServerProcess) -> float:
    return server.rss_bytes() / MIB


def _send_big_headers(address: tuple[str, int], headers: int, size: int) -> tuple[int, int]:
    """Send a request with `headers` headers of `size` bytes each; (status or 0, bytes sent).

    Stops writing as soon as the server answers or closes: a server with a header cap does so
    after its limit, long before the whole head is sent.
    """
    sent = 0
    value = b"a" * size
    with socket.create_connection(address, timeout=10) as sock:
        try:
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: big\r\n")
            for i in range(headers):
                line = b"X-Big-%d: " % i + value + b"\r\n"
                sock.sendall(line)
                sent += len(line)
            sock.sendall(b"\r\n")
        except OSError:
            pass
        try:
            sock.settimeout(5)
            head = sock.recv(65536)
        except OSError:
            return 0, sent
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return status, sent


async def _probe_livez(base_url: str, stop: asyncio.Event) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        while not stop.is_set():
            started = time.perf_counter()
            response = await client.get("/livez")
            if response.status_code == 200:
                latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.02)
    return latencies


async def test_r23_huge_headers_are_refused_before_they_are_buffered(tmp_path: Path) -> None:
    concurrent = scaled(20, 5)
    with serve(tmp_path) as server:
        rss_before = _rss_mib(server)
        stop = asyncio.Event()
        probe = asyncio.create_task(_probe_livez(server.base_url, stop))
        one = await asyncio.to_thread(_send_big_headers, server.address, 1, 16 * MIB)
        huge = (
            await asyncio.to_thread(_send_big_headers, server.address, 1, 128 * MIB)
            if FULL
            else one
        )
        many = await asyncio.gather(
            *(
                asyncio.to_thread(_send_big_headers, server.address, 50, MIB)
                for _ in range(concurrent)
            )
        )
        stop.set()
        livez = await probe
        rss_growth = _rss_mib(server) - rss_before
        with server.client() as client:
            still = client.post("/v1/models/doubler/predict", json={"x": 2}).status_code
    results = [one, huge, *many]
    answered_431 = sum(1 for status, _ in results if status == 431)
    # What a client managed to write counts its own kernel's buffers too (a few MiB even when
    # the server stops reading at once), so "not buffered" is judged by the server's memory.
    max_sent_mib = max(sent for _, sent in results) / MIB
    livez_p99 = sorted(livez)[int(0.99 * (len(livez) - 1))] * 1000 if livez else float("inf")
    all_431 = answered_431 == len(results)
    record(
        "R23 huge headers, no credentials",
        load=f"16 MiB header{', 128 MiB header' if FULL else ''}, {concurrent} x 50 x 1 MiB",
        lost="n/a",
        figure=(
            f"{answered_431}/{len(results)} read a 431; a client wrote at most "
            f"{max_sent_mib:.1f} MiB; "
            f"RSS +{rss_growth:.0f} MiB; /livez p99 {livez_p99:.0f} ms"
        ),
        passed=all_431
        and rss_growth < RSS_GROWTH_MIB
        and still == 200
        and livez_p99 < LIVEZ_P99_MS,
    )
    assert rss_growth < RSS_GROWTH_MIB
    assert all_431, results
    assert still == 200
    if FULL:
        assert livez_p99 < LIVEZ_P99_MS


def _attack(server: ServerProcess, count: int, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.faults.attackers",
            "slow-headers",
            *map(str, server.address),
            str(count),
            str(seconds),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )


async def test_r24_slow_clients_do_not_starve_a_good_one(tmp_path: Path) -> None:
    # 20 000 slow connections need two attacker processes (each holds under 20 000 files).
    attackers = scaled(2, 1)
    per_attacker = scaled(10_000, 300)
    attack_s = scaled(40, 12)
    # A short header timeout so that the CI run sees connections being cut.
    env = {"MODELSERVE_HTTP__HEADER_TIMEOUT_S": "5"}
    with serve(tmp_path, env=env) as server:
        procs = [_attack(server, per_attacker, attack_s) for _ in range(attackers)]
        await asyncio.sleep(min(5.0, attack_s / 3))  # let the connections pile up
        stop = asyncio.Event()
        livez_task = asyncio.create_task(_probe_livez(server.base_url, stop))
        good = await steady_load(
            server.base_url,
            path="/v1/models/doubler/predict",
            body={"x": 1.5},
            rate_per_s=20,
            duration_s=attack_s / 2,
        )
        stop.set()
        livez = await livez_task
        fds = psutil.Process(server.proc.pid).num_fds()
        reports = [json.loads(p.communicate(timeout=attack_s + 30)[0]) for p in procs]
    opened = sum(int(r["opened"]) for r in reports)
    cut = sum(int(r["cut"]) for r in reports)
    livez_p99 = sorted(livez)[int(0.99 * (len(livez) - 1))] * 1000 if livez else float("inf")
    record(
        "R24 slow headers (slowloris) vs a client at 20 predicts/s",
        load=f"{opened} slow connections for {attack_s} s",
        lost=f"{good.failed} of {good.sent} good requests ({good.failures or 'none'})",
        figure=f"{cut} slow ones cut; /livez p99 {livez_p99:.0f} ms; server fds {fds}",
        passed=good.failed == 0 and cut >= opened * 0.9 and livez_p99 < LIVEZ_P99_MS,
    )
    assert good.failed == 0, good.failures
    assert cut >= opened * 0.9, f"only {cut} of {opened} slow connections were cut"
    if FULL:
        assert livez_p99 < LIVEZ_P99_MS
