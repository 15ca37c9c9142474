"""Live gauges: queue depth, replicas, readiness and the process's RSS, CPU and open files.

These are states, not events, so they are sampled. The model gauges (a few per loaded version)
are cheap and change with deploys and load, so they are refreshed on every observability tick;
the process gauges (which read /proc) every `sample_interval_s`. Under several workers each
process writes its own values to the shared directory, so a scrape answered by one worker sees
the others' state at most a tick old. Right before a process answers a scrape it samples itself
again, so a single process's gauges are always current.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
from pathlib import Path
from typing import TYPE_CHECKING

from modelserve.observability import multiprocess
from modelserve.types import ServiceStatus

if TYPE_CHECKING:
    from modelserve.observability.metrics import Metrics
    from modelserve.runtime.manager import ModelRuntime

logger = logging.getLogger("modelserve.observability")

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_memory_bytes() -> int | None:
    """Current resident set size of this process (None where it cannot be read)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE_SIZE
    # Elsewhere only the peak is known (bytes on macOS, KiB on Linux/BSD).
    with contextlib.suppress(OSError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if os.uname().sysname == "Darwin" else peak * 1024
    return None


def open_fds() -> int | None:
    """Open file descriptors of this process (None where they cannot be listed)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        with contextlib.suppress(OSError):
            return len(os.listdir(folder))
    return None


def cpu_seconds() -> float:
    """User + system CPU time of this process."""
    times = os.times()
    return times.user + times.system


class LiveSampler:
    """Refreshes the live gauges of one process from its ModelRuntime and the OS."""

    def __init__(self, metrics: Metrics, runtime: ModelRuntime | None = None) -> None:
        self._metrics = metrics
        self._runtime = runtime
        self._cpu_seen = 0.0
        self._versions: set[tuple[str, str]] = set()

    def attach(self, runtime: ModelRuntime) -> None:
        """Sample this runtime's models from now on."""
        self._runtime = runtime

    def sample(self) -> None:
        """Refresh every live gauge now."""
        self._sample_process()
        if self._runtime is not None:
            self._sample_models(self._runtime)

    def sample_models(self) -> None:
        """Refresh the per-model gauges now (cheap: call often)."""
        if self._runtime is not None:
            self._sample_models(self._runtime)

    def refresh(self) -> None:
        """Before a scrape: push pending counts, then refresh the live gauges."""
        self._metrics.flush()
        self.sample()

    def _sample_process(self) -> None:
        m = self._metrics
        rss = resident_memory_bytes()
        if rss is not None:
            m.process_rss.set(rss)
        fds = open_fds()
        if fds is not None:
            m.process_open_fds.set(fds)
        # A counter under several workers (files of exited workers still count), so it only
        # ever grows by what this process used since the last sample.
        used = cpu_seconds()
        if used > self._cpu_seen:
            m.process_cpu.inc(used - self._cpu_seen)
            self._cpu_seen = used

    def _sample_models(self, runtime: ModelRuntime) -> None:
        m = self._metrics
        seen: set[tuple[str, str]] = set()
        for deployed in runtime:
            spec = deployed.spec
            labels = (spec.name, spec.version)
            seen.add(labels)
            engine = deployed.engine
            ready = deployed.status is ServiceStatus.READY and engine is not None
            m.queue_depth.labels(*labels).set(engine.queue_depth if engine is not None else 0)
            m.replicas.labels(*labels).set(len(deployed.replicas) if ready else 0)
            busy = sum(1 for r in deployed.replicas if r.busy) if ready else 0
            m.replicas_busy.labels(*labels).set(busy)
            m.model_ready.labels(*labels).set(1 if ready else 0)
            failed = deployed.status is ServiceStatus.FAILED
            m.model_failed.labels(*labels).set(1 if failed else 0)
        for labels in self._versions - seen:
            self._retire(labels)
        self._versions = seen

    def _retire(self, labels: tuple[str, str]) -> None:
        m = self._metrics
        if multiprocess.active():
            # Shared files cannot drop one series: zero it so sums stay right; it is gone
            # once this worker exits.
            for gauge in (m.queue_depth, m.replicas, m.replicas_busy, m.model_ready):
                gauge.labels(*labels).set(0)
            m.model_failed.labels(*labels).set(0)
        m.forget_model(*labels)
