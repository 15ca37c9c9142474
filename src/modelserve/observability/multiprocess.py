"""Metrics that add up across `modelserve serve --workers N` (R22), and their exposition.

prometheus_client's multiprocess mode keeps each process's values in memory-mapped files named
after its pid in one directory; whoever scrapes sums the files. The mode is chosen when
prometheus_client is first imported, from `PROMETHEUS_MULTIPROC_DIR`, so the CLI must prepare the
directory before it starts the workers (they are spawned fresh and inherit the variable):

* counters and histograms: files stay after a worker dies, so what it served stays counted and a
  restarted worker (a new pid, a new file) never counts twice;
* live gauges (`livesum`, `livemin`, `liveall`): a dead worker's file is deleted, by the worker
  itself on a clean exit (`mark_exited`) and, for workers killed outright, at the next scrape
  (`prune_dead`), so no stale queue depth or RSS survives its process.

Each run gets a fresh directory: stale files from an earlier run would be summed too.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, values
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def directory() -> str | None:
    """The multiprocess directory of this run, when metrics are shared between processes."""
    path = os.environ.get(MULTIPROC_ENV)
    return path or None


def active() -> bool:
    """True when this process writes its metrics to the shared directory."""
    return directory() is not None and bool(getattr(values.ValueClass, "_multiprocess", False))


@dataclass
class MultiprocessDir:
    """The directory prepared for one run; `cleanup` removes it when this run made it."""

    path: Path
    owned: bool

    def cleanup(self) -> None:
        """Remove the directory if this run created it; unset the variable either way."""
        if os.environ.get(MULTIPROC_ENV) == str(self.path):
            del os.environ[MULTIPROC_ENV]
        if self.owned:
            shutil.rmtree(self.path, ignore_errors=True)


def prepare(workers: int) -> MultiprocessDir | None:
    """Before starting `workers` server processes: point them at a fresh shared directory.

    Returns None for one process (in-memory metrics are exact and cheaper). A directory set by
    the operator in PROMETHEUS_MULTIPROC_DIR is used as is and kept (it must be emptied between
    runs, as prometheus_client documents); otherwise a new temporary one is made.
    """
    existing = directory()
    if existing is not None:
        Path(existing).mkdir(parents=True, exist_ok=True)
        return MultiprocessDir(Path(existing), owned=False)
    if workers <= 1:
        return None
    path = Path(tempfile.mkdtemp(prefix="modelserve-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    return MultiprocessDir(path, owned=True)


def prepare_forked() -> MultiprocessDir:
    """Before forking processes that write metrics (Celery's prefork pool): a shared directory,
    and the value class switched to it in this process, which already imported
    prometheus_client: forked children inherit the module as it is, and only metrics created
    after the switch write to the directory. (Spawned processes, as `serve --workers`, read the
    variable at their own import and need only `prepare`.)"""
    prepared = prepare(2)
    assert prepared is not None  # two processes always share a directory
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return prepared


def mark_exited(pid: int | None = None) -> None:
    """Drop a process's live gauges (call in a worker's shutdown; default: this process)."""
    path = directory()
    if path is not None and active():
        _mark_dead(pid if pid is not None else os.getpid(), path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    # A killed worker stays a zombie until its supervisor reaps it: count it as dead.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    return True


def prune_dead(path: str) -> list[int]:
    """Delete the live-gauge files of processes that no longer exist; return their pids."""
    dead: set[int] = set()
    for name in os.listdir(path):
        match = _LIVE_FILE.match(name)
        if match is not None:
            pid = int(match.group(1))
            if pid != os.getpid() and not _alive(pid):
                dead.add(pid)
    for pid in dead:
        _mark_dead(pid, path)
    return sorted(dead)


def _mark_dead(pid: int, path: str) -> None:
    mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


class _PruningCollector(Collector):
    """Sums every process's files, after forgetting dead workers' live gauges."""

    def __init__(self, path: str) -> None:
        self._path = path

    def collect(self) -> Iterator[Metric]:
        prune_dead(self._path)
        files = glob.glob(os.path.join(self._path, "*.db"))
        merged: Iterable[Metric] = MultiProcessCollector.merge(  # type: ignore[no-untyped-call]
            files, accumulate=True
        )
        return iter(merged)


class Refresher(Collector):
    """A collector that only refreshes live values (RSS, queue depth) before a scrape."""

    def __init__(self, refresh: Iterable[Callable[[], None]]) -> None:
        self._refresh = list(refresh)

    def collect(self) -> Iterator[Metric]:
        for refresh in self._refresh:
            with contextlib.suppress(Exception):  # a failed refresh must not fail the scrape
                refresh()
        return iter(())

    def describe(self) -> Iterator[Metric]:
        return iter(())


def scrape_registry(local: CollectorRegistry) -> CollectorRegistry:
    """The registry to expose: the shared directory's sum, or this process's own metrics."""
    path = directory()
    if path is None or not active():
        return local
    registry = CollectorRegistry()
    registry.register(_PruningCollector(path))
    return registry


def aggregate_registry(path: str) -> CollectorRegistry:
    """A registry that sums every process's files in `path` (for a supervisor or a test)."""
    registry = CollectorRegistry()
    registry.register(_PruningCollector(path))
    return registry


def render(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """Exposition bytes and content type, in the format the scraper asked for."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
