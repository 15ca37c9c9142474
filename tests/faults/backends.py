"""A Redis and a PostgreSQL of the scenario's own, on free ports, that it may stop and start.

The machine's shared services stay untouched: a scenario that takes its database down must not
take down every other test's.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.server import free_port

PG_USER = "postgres"


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def _wait(port: int, up: bool, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _answers(port) == up:
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} never went {'up' if up else 'down'}")


@dataclass
class OwnRedis:
    """redis-server on a free port, in memory only."""

    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(self.port, up=True)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None
        _wait(self.port, up=False)


@contextlib.contextmanager
def own_redis() -> Iterator[OwnRedis]:
    """A Redis of this scenario's own (skipped where redis-server is not installed)."""
    if shutil.which("redis-server") is None:
        import pytest

        pytest.skip("redis-server is not installed")
    redis = OwnRedis(free_port())
    redis.start()
    try:
        yield redis
    finally:
        redis.kill()


@dataclass
class OwnPostgres:
    """A throwaway PostgreSQL cluster (trust auth) on a free port."""

    bin_dir: Path
    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", PG_USER, "--", str(self.bin_dir / "pg_ctl"), "-D",
             str(self.data_dir), *args],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data_dir}"
        self._ctl("-o", options, "-w", "start")
        _wait(self.port, up=True)

    def stop(self) -> None:
        # Immediate: an outage, not a tidy shutdown that waits for clients to leave.
        self._ctl("-m", "immediate", "-w", "stop")
        _wait(self.port, up=False)


@contextlib.contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    """A PostgreSQL of this scenario's own (skipped where the server binaries are absent)."""
    import pytest

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    bin_dir = Path(found[-1]).parent
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as
    # the postgres user.
    top = Path(tempfile.mkdtemp(prefix="modelserve-faults-pg-"))
    os.chmod(top, 0o755)
    data_dir = top / "pgdata"
    data_dir.mkdir()
    shutil.chown(data_dir, PG_USER, PG_USER)
    subprocess.run(
        ["runuser", "-u", PG_USER, "--", str(bin_dir / "initdb"), "-D", str(data_dir), "-A",
         "trust", "-U", PG_USER],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    postgres = OwnPostgres(bin_dir, data_dir, free_port())
    postgres.start()
    try:
        yield postgres
    finally:
        with contextlib.suppress(subprocess.CalledProcessError, TimeoutError):
            postgres.stop()
        shutil.rmtree(top, ignore_errors=True)
