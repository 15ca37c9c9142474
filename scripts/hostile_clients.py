"""Figures for the connection limits (docs/reliability.md, "Hostile clients"): a real
`modelserve serve tests/e2e/services.py` against slow-header and slow-body floods while a
well-behaved client keeps predicting on fresh connections. A measuring script, not a test.

    .venv/bin/python scripts/hostile_clients.py                     # 6000 slow heads, cap 2000
    .venv/bin/python scripts/hostile_clients.py --conns 20000 --cap 10000 --seconds 40

Attackers run as child processes (`--attack`), 3000 connections each, so that their sockets do
not count against this process's descriptors. Loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import selectors
import signal
import socket
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
SERVICES = ROOT / "tests" / "e2e" / "services.py"
PER_ATTACKER = 3000


def attack(host: str, port: int, count: int, seconds: float, kind: str) -> None:
    """Hold `count` connections, each sending a head line (or a body byte) every second and
    never finishing; print how many the server cut and when."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    selector = selectors.DefaultSelector()
    alive: set[socket.socket] = set()
    started = time.monotonic()
    refused = 0
    head = b"GET /livez HTTP/1.1\r\nHost: slow\r\n"
    if kind == "body":
        head = (
            b"POST /v1/models/echo/predict HTTP/1.1\r\nHost: slow\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        )
    for _ in range(count):
        try:
            sock = socket.create_connection((host, port), timeout=5)
            sock.sendall(head)
        except OSError:
            refused += 1
            continue
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        alive.add(sock)
    opened = len(alive)
    cut: list[float] = []
    drip = b"X-Slow: 1\r\n" if kind == "head" else b" "
    next_drip = time.monotonic() + 1.0
    while time.monotonic() - started < seconds and alive:
        for key, _ in selector.select(timeout=0.2):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            with contextlib.suppress(OSError):
                sock.recv(4096)
            cut.append(time.monotonic() - started)
            selector.unregister(sock)
            alive.discard(sock)
            sock.close()
        if time.monotonic() >= next_drip:
            next_drip += 1.0
            for sock in list(alive):
                try:
                    sock.send(drip)
                except OSError:
                    cut.append(time.monotonic() - started)
                    selector.unregister(sock)
                    alive.discard(sock)
                    sock.close()
    report = {"opened": opened, "refused": refused, "cut": len(cut)}
    if cut:
        report |= {"first_cut_s": round(min(cut), 1), "last_cut_s": round(max(cut), 1)}
    print(json.dumps(report), flush=True)


def start(tmp: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    full = {**os.environ, "MODELSERVE_AUTH__ENABLED": "false", "HF_HUB_OFFLINE": "1", **env}
    command = [sys.executable, "-m", "modelserve", "serve", str(SERVICES), "--port", str(port)]
    with (tmp / "server.log").open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 (our own command line, no shell)
            command, cwd=tmp, env=full, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc, port
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError((tmp / "server.log").read_text()[-3000:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def good_client(base: str, stop: threading.Event, out: dict[str, list[float] | int]) -> None:
    """A predict and a /livez every 50 ms, each on a new connection (what the cap must admit)."""
    latencies: list[float] = []
    failed = 0
    while not stop.is_set():
        for method, path, body in (
            ("POST", "/v1/models/echo/predict", {"values": [1.0, 2.0]}),
            ("GET", "/livez", None),
        ):
            began = time.perf_counter()
            try:
                with httpx.Client(base_url=base, timeout=5) as client:
                    status = client.request(method, path, json=body).status_code
                if status == 200:
                    latencies.append(time.perf_counter() - began)
                else:
                    failed += 1
            except httpx.TransportError:
                failed += 1
        time.sleep(0.05)
    out["latencies"] = latencies
    out["failed"] = failed


def run(args: argparse.Namespace, kind: str) -> None:
    env = {
        "MODELSERVE_HTTP__MAX_CONNECTIONS": str(args.cap),
        "MODELSERVE_HTTP__HEADER_TIMEOUT_S": str(args.timeout),
        "MODELSERVE_HTTP__BODY_TIMEOUT_S": str(args.timeout),
    }
    with tempfile.TemporaryDirectory() as name:
        proc, port = start(Path(name), env)
        try:
            attackers = []
            left = args.conns
            while left > 0:
                count = min(PER_ATTACKER, left)
                left -= count
                attackers.append(
                    subprocess.Popen(  # noqa: S603 (this script, no shell)
                        [
                            sys.executable,
                            __file__,
                            "--attack",
                            kind,
                            str(port),
                            str(count),
                            str(args.seconds),
                        ],
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                )
            time.sleep(min(5.0, args.seconds / 4))
            stop = threading.Event()
            seen: dict[str, list[float] | int] = {}
            good = threading.Thread(
                target=good_client, args=(f"http://127.0.0.1:{port}", stop, seen)
            )
            good.start()
            peak_fds = 0
            end = time.monotonic() + args.seconds / 2
            while time.monotonic() < end:
                peak_fds = max(peak_fds, psutil.Process(proc.pid).num_fds())
                time.sleep(0.5)
            stop.set()
            good.join()
            reports = [json.loads(a.communicate(timeout=args.seconds + 60)[0]) for a in attackers]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    latencies = sorted(seen["latencies"])  # type: ignore[arg-type]
    p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1000 if latencies else float("nan")
    what = "heads" if kind == "head" else "bodies"
    print(
        f"slow {what}: {sum(r['opened'] for r in reports)} opened"
        f" ({sum(r['refused'] for r in reports)} refused at connect),"
        f" {sum(r['cut'] for r in reports)} cut by the server"
        f" (first {min(r.get('first_cut_s', 0) for r in reports)} s,"
        f" last {max(r.get('last_cut_s', 0) for r in reports)} s);"
        f" cap {args.cap}, timeout {args.timeout} s; server fds peak {peak_fds}"
    )
    print(
        f"  good client: {len(latencies)} ok, {seen['failed']} failed;"
        f" p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {p99:.1f} ms"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--attack":
        kind, port, count, seconds = sys.argv[2:6]
        attack("127.0.0.1", int(port), int(count), float(seconds), kind)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conns", type=int, default=6000)
    parser.add_argument("--cap", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=5.0, help="header and body timeout")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--kind", choices=["head", "body"], action="append")
    args = parser.parse_args()
    for kind in args.kind or ["head", "body"]:
        run(args, kind)


if __name__ == "__main__":
    main()
