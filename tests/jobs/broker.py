"""RabbitMQ for the Celery tests: a queue of this test's own, and real `modelserve worker`s.

Every test gets a random queue name (`MODELSERVE_JOBS__CELERY_QUEUE`), so parallel runs on the
machine's shared RabbitMQ never take each other's messages, and the queue is deleted after.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.e2e.server import kill_tree

RABBITMQ_HOST, RABBITMQ_PORT = "127.0.0.1", 5672
RABBITMQ_URL = os.environ.get(
    "MODELSERVE_TEST_RABBITMQ_URL", f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}//"
)
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Broker:
    """The broker URL and this test's queue: the settings a server and its workers share."""

    url: str
    queue: str

    def env(self) -> dict[str, str]:
        """MODELSERVE_* variables of a server (and its workers) in Celery mode."""
        return {
            "MODELSERVE_JOBS__RUNNER": "celery",
            "MODELSERVE_JOBS__BROKER_URL": self.url,
            "MODELSERVE_JOBS__CELERY_QUEUE": self.queue,
        }

    def depth(self) -> int:
        """Messages ready in the queue (0 when it does not exist yet)."""
        from kombu import Connection

        with Connection(self.url, connect_timeout=5) as connection:
            try:
                declared = connection.default_channel.queue_declare(self.queue, passive=True)
            except Exception:
                return 0
            return int(declared.message_count)


@pytest.fixture
def broker() -> Iterator[Broker]:
    """This test's queue on the real RabbitMQ; deleted afterwards."""
    require_service("RabbitMQ", RABBITMQ_HOST, RABBITMQ_PORT)
    found = Broker(RABBITMQ_URL, f"modelserve-test-{uuid.uuid4().hex[:12]}")
    try:
        yield found
    finally:
        delete_queue(found)


def delete_queue(broker: Broker) -> None:
    from kombu import Connection

    with contextlib.suppress(Exception), Connection(broker.url, connect_timeout=5) as connection:
        connection.default_channel.queue_delete(broker.queue)


@dataclass
class WorkerProcess:
    """One running `modelserve worker`."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def children(self) -> list[int]:
        """Pids of its pool processes (each runs chunks)."""
        import psutil

        return [p.pid for p in psutil.Process(self.proc.pid).children()]


@contextlib.contextmanager
def launch_worker(
    tmp_dir: Path, *, target: Path, env: Mapping[str, str], concurrency: int = 1
) -> Iterator[WorkerProcess]:
    """`modelserve worker TARGET` until the block ends; yields once it consumes its queue."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    log_path = tmp_dir / f"worker-{uuid.uuid4().hex[:6]}.log"
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
    full_env = {
        **inherited,
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
        "MODELSERVE_AUTH__ENABLED": "false",
        **env,
    }
    command = [
        sys.executable,
        "-m",
        "modelserve",
        "worker",
        str(target),
        "--concurrency",
        str(concurrency),
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=tmp_dir,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = WorkerProcess(proc, log_path)
    try:
        _wait_ready(worker)
        yield worker
    finally:
        kill_tree(proc)


def _wait_ready(worker: WorkerProcess) -> None:
    # Celery says "ready." once it consumes; the pool processes load their models before that.
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if worker.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {worker.proc.returncode}:\n{worker.log()}")
        if " ready." in worker.log():
            return
        time.sleep(0.1)
    raise RuntimeError(f"worker not ready within {READY_TIMEOUT_S:g} s:\n{worker.log()[-4000:]}")
