"""Start one bench server as its own process group, watch its resources, and stop it.

Server-side figures come from psutil over the server's whole process tree (peers run worker
processes): peak resident memory, sampled every 100 ms, and CPU seconds (user + system).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx
import psutil

SAMPLE_EVERY_S = 0.1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerFailedError(RuntimeError):
    """Raised when a server exits or does not answer before its startup deadline."""


@dataclass
class Ready:
    """What the first good answer looked like."""

    startup_s: float
    status: int
    sample: str


class ServerProcess:
    """A started server: its process group, log file and resource readings."""

    def __init__(
        self,
        cmd: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_path: Path,
    ) -> None:
        self.cmd = list(cmd)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb")
        self.started_at = time.perf_counter()
        # Own session: stopping the group also stops the peers' worker processes.
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=cwd,
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._root = psutil.Process(self.proc.pid)

    def tree(self) -> list[psutil.Process]:
        """The server process and all its live descendants."""
        try:
            return [self._root, *self._root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """User + system CPU seconds used so far by the live tree (and reaped children)."""
        total = 0.0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        return total

    def rss_bytes(self) -> int:
        """Resident memory of the whole tree now."""
        total = 0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def wait_ready(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        timeout_s: float,
    ) -> Ready:
        """POST the workload body until a 2xx comes back; ServerFailedError on exit or timeout."""
        deadline = time.perf_counter() + timeout_s
        last = "no answer"
        with httpx.Client(timeout=10.0) as client:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise ServerFailedError(
                        f"server exited with {self.proc.returncode}: {self.log_tail()}"
                    )
                try:
                    resp = client.post(url, content=body, headers=dict(headers))
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                else:
                    if 200 <= resp.status_code < 300 and self._all_ready(url, body, headers):
                        return Ready(
                            startup_s=time.perf_counter() - self.started_at,
                            status=resp.status_code,
                            sample=resp.text[:300],
                        )
                    last = f"{resp.status_code} {resp.text[:200]}"
                    # modelserve keeps serving with a model whose setup raised (R19); waiting
                    # out the timeout would only waste the run (minutes on a lent GPU).
                    if resp.status_code == 503 and "failed to load" in resp.text:
                        raise ServerFailedError(f"model failed to load: {resp.text[:500]}")
                time.sleep(0.2)
        raise ServerFailedError(f"not ready after {timeout_s:.0f}s (last: {last})")

    @staticmethod
    def _all_ready(url: str, body: bytes, headers: Mapping[str, str], tries: int = 24) -> bool:
        """True when `tries` requests on fresh connections all succeed.

        With several server processes sharing the port (SO_REUSEPORT), each new connection
        lands on any of them, and one that is still loading its model answers 503: one 2xx
        says that one process is ready, not all of them.
        """
        for _ in range(tries):
            try:
                with httpx.Client(timeout=10.0) as fresh:
                    resp = fresh.post(url, content=body, headers=dict(headers))
            except httpx.HTTPError:
                return False
            if not 200 <= resp.status_code < 300:
                return False
        return True

    def log_tail(self, chars: int = 1500) -> str:
        """The end of the server's output, for error messages."""
        self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-chars:]

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after `timeout_s`."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout_s)
        # Workers of the group may outlive their parent: end the group, which is ours alone.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._log.close()


class PeakMemory:
    """Samples a server's RSS on a thread while the `with` block runs; `peak` is the max."""

    def __init__(self, server: ServerProcess) -> None:
        self._server = server
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        self.peak = self._server.rss_bytes()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self.peak = max(self.peak, self._server.rss_bytes())
