"""Hostile clients, run as their own processes so their sockets do not count against the test
runner's file limit: `python -m tests.faults.attackers slow-headers HOST PORT N SECONDS`.

Each prints one JSON line when done: how many connections it opened, how many the server
closed (or answered) before the end, and after how long the first and the last were cut.
"""

from __future__ import annotations

import json
import resource
import selectors
import socket
import sys
import time

DRIP_S = 1.0


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def slow_headers(host: str, port: int, count: int, seconds: float) -> dict[str, object]:
    """Open `count` connections and dribble one header line per DRIP_S on each, never ending
    the header block (slowloris); note when the server cuts each one."""
    _raise_fd_limit()
    selector = selectors.DefaultSelector()
    opened: list[socket.socket] = []
    refused = 0
    started = time.monotonic()
    for _ in range(count):
        try:
            sock = socket.create_connection((host, port), timeout=5)
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: slow\r\n")
        except OSError:
            refused += 1
            continue
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        opened.append(sock)
    cut_after: list[float] = []
    alive = set(opened)
    next_drip = time.monotonic() + DRIP_S
    while time.monotonic() - started < seconds and alive:
        for key, _ in selector.select(timeout=0.2):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            # Any answer (408, 503) or a close ends this connection's attack.
            cut_after.append(time.monotonic() - started)
            selector.unregister(sock)
            alive.discard(sock)
            del data
        if time.monotonic() >= next_drip:
            next_drip += DRIP_S
            for sock in list(alive):
                try:
                    sock.send(b"X-Slow: 1\r\n")
                except OSError:
                    cut_after.append(time.monotonic() - started)
                    selector.unregister(sock)
                    alive.discard(sock)
    for sock in opened:
        sock.close()
    return {
        "opened": len(opened),
        "refused": refused,
        "cut": len(cut_after),
        "first_cut_s": min(cut_after) if cut_after else None,
        "last_cut_s": max(cut_after) if cut_after else None,
    }


def main(argv: list[str]) -> None:
    kind, host, port, count, seconds = argv
    if kind != "slow-headers":
        raise SystemExit(f"unknown attack {kind!r}")
    print(json.dumps(slow_headers(host, int(port), int(count), float(seconds))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
