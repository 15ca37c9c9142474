"""Batch jobs on Celery workers: the only module that imports Celery (an optional dependency:
`pip install 'modelserve[celery]'`; the embedded runner never imports this module).

The server publishes; `modelserve worker` consumes. One message per chunk, to a RabbitMQ queue,
holding nothing but `[job_id, index]` as JSON (never a pickle: a broker is a network input).
The task runs the chunk through the same `ChunkProcessor.run(ChunkTask(job_id, index))` as the
embedded runner, with the database's lease, checkpoint and exactly-once; the broker only says
*which* chunk to look at. No result backend: the database is the source of truth.

Reliability settings, and why:

- `acks_late` + `reject_on_worker_lost`: a message is acknowledged when its task returns, and
  a worker process killed mid-chunk gives its message back to the queue, so the chunk is not
  forgotten. Another worker then finds the chunk still leased by the dead one and sends itself
  a message for when that lease expires (`jobs/delivery.py`).
- `worker_prefetch_multiplier=1`: a worker holds one message per process, so a long job's
  chunks spread over every worker instead of queueing behind a busy one.
- Publishing retries briefly (`publish_timeout_s` for the connection); past that the caller
  leaves the chunk unpublished in the database and the server's outbox (`jobs/outbox.py`)
  sends it later.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from celery import Celery
from celery.exceptions import Reject
from celery.signals import worker_process_init, worker_process_shutdown

from modelserve.config import JobsConfig
from modelserve.jobs.work import ChunkTask, Dispatch

logger = logging.getLogger("modelserve.jobs")

TASK_NAME = "modelserve.jobs.run_chunk"
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_INDEX = 1_000_000
# A message that could not be handled (the database away) goes back to the queue after this.
ERROR_PAUSE_S = 2.0

# What the worker process does with one chunk: the message the chunk needs next, if any.
ChunkHandler = Callable[[ChunkTask], Dispatch | None]


def build_celery(config: JobsConfig) -> Celery:
    """A Celery app for chunk messages with the settings above (no task registered yet)."""
    if config.broker_url is None:
        raise ValueError("jobs.broker_url is not set")
    app = Celery("modelserve", broker=config.broker_url.get_secret_value(), set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=config.celery_queue,
        broker_connection_timeout=config.publish_timeout_s,
        broker_connection_retry_on_startup=True,
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        # Our logging (structlog, redaction) stays in charge of the root logger.
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        enable_utc=True,
    )
    return app


class CeleryPublisher:
    """`ChunkPublisher` over a Celery app: one `run_chunk` message per dispatch."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def publish(self, dispatches: Sequence[Dispatch]) -> None:
        if not dispatches:
            return
        with self.app.producer_or_acquire() as producer:
            for dispatch in dispatches:
                self.app.send_task(
                    TASK_NAME,
                    args=[dispatch.task.job_id, dispatch.task.index],
                    queue=dispatch.queue,
                    countdown=dispatch.countdown_s or None,
                    producer=producer,
                    add_to_parent=False,
                )


def install_worker(
    app: Celery,
    *,
    handler: ChunkHandler,
    on_start: Callable[[], None],
    on_stop: Callable[[], None],
    on_unpublished: Callable[[ChunkTask], None],
) -> None:
    """Register the task on `app`, and the hooks each worker process runs: `on_start` once it
    is forked (load the models there: a model loaded before the fork would be shared by
    processes that each start threads in it), `on_stop` when it exits."""
    publisher = CeleryPublisher(app)

    def run_chunk(job_id: Any, index: Any) -> None:
        task = _task_of(job_id, index)
        if task is None:
            return  # not ours to run: acked and dropped
        try:
            follow = handler(task)
        except Exception:
            # The database is away, most likely: this message is the chunk's only one, so it
            # goes back to the queue (after a pause, or it would come straight back).
            logger.exception("jobs: chunk %s/%d could not be handled", task.job_id, task.index)
            _requeue()
        if follow is None:
            return
        try:
            publisher.publish([follow])
        except Exception as exc:  # the broker went away: the server's outbox sends it
            logger.warning(
                "jobs: could not requeue chunk %s/%d (%s); the server's outbox will",
                task.job_id,
                task.index,
                type(exc).__name__,
            )
            try:
                on_unpublished(task)
            except Exception:
                _requeue()

    app.task(
        name=TASK_NAME,
        acks_late=True,
        reject_on_worker_lost=True,
        ignore_result=True,
    )(run_chunk)
    worker_process_init.connect(lambda **_: on_start(), weak=False)
    worker_process_shutdown.connect(lambda **_: on_stop(), weak=False)


def run_worker(app: Celery, *, concurrency: int, queues: Sequence[str], loglevel: str) -> None:
    """Run a Celery worker (prefork pool, `concurrency` processes) until it is told to stop."""
    app.worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            f"--queues={','.join(queues)}",
            f"--loglevel={loglevel.upper()}",
            "--pool=prefork",
            # A node name of its own: two workers on one host must not share one (their
            # remote-control queues would collide).
            f"--hostname=modelserve-{os.getpid()}@%h",
            # No gossip, mingle or events: workers need not know each other (the database
            # coordinates them), and each would be broker traffic.
            "--without-gossip",
            "--without-mingle",
        ]
    )


def _requeue() -> NoReturn:
    """Give the message being handled back to the queue (it was not acknowledged)."""
    time.sleep(ERROR_PAUSE_S)
    raise Reject("handled later", requeue=True)


def _task_of(job_id: Any, index: Any) -> ChunkTask | None:
    """The chunk a message names, or None (logged) for a message that names none."""
    if (
        isinstance(job_id, str)
        and JOB_ID.match(job_id)
        and isinstance(index, int)
        and not isinstance(index, bool)
        and 0 <= index < MAX_INDEX
    ):
        return ChunkTask(job_id, index)
    logger.warning("jobs: dropped a chunk message that names no chunk")
    return None
