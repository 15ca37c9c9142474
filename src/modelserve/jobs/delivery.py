"""`ChunkDelivery`: what a Celery worker does with one message for a chunk.

A message names a chunk (job id, index) and nothing else; the database says what to do. The
chunk is run through `ChunkProcessor.run` when this worker serves its model version, and then
the chunk's row decides whether it needs another message, and when:

| the chunk afterwards                      | next message                                   |
|-------------------------------------------|------------------------------------------------|
| done, failed, cancelled; job finished     | none: the message is acked and gone            |
| pending, to retry after a backoff         | one, delayed until `next_attempt_at`           |
| running under another worker's lease      | one, delayed until that lease would expire     |
| of a version this worker does not serve   | one, after `NOT_SERVED_DELAY_S`, left for another |

The third row is how `kill -9` of a worker is survived: the dead worker's message comes back
(late acks, and a lost worker's message is rejected back to the queue), finds the chunk still
leased by the dead worker, and waits for that lease to expire instead of being dropped. A
duplicate message (the outbox published twice) costs one database read.
"""

from __future__ import annotations

import datetime as dt
import logging

from modelserve.config import JobsConfig
from modelserve.db.base import utcnow
from modelserve.jobs.gateway import ModelGateway
from modelserve.jobs.processing import ChunkProcessor
from modelserve.jobs.sql_queue import SqlJobQueue
from modelserve.jobs.states import ACTIVE_JOB_STATES, UNFINISHED_CHUNK_STATES, ChunkState
from modelserve.jobs.work import ChunkTask, Dispatch

logger = logging.getLogger("modelserve.jobs")

# A chunk of a version this worker does not serve goes back to the queue after this long (the
# model may be loading here, or another pool serves it).
NOT_SERVED_DELAY_S = 5.0
# Past a lease's expiry, so that the retried message finds it expired, clocks apart.
LEASE_SLACK_S = 1.0


class ChunkDelivery:
    """Handles chunk messages in a worker process (one instance per process)."""

    def __init__(
        self,
        *,
        processor: ChunkProcessor,
        queue: SqlJobQueue,
        gateway: ModelGateway,
        config: JobsConfig,
    ) -> None:
        self.processor = processor
        self.queue = queue
        self.gateway = gateway
        self.config = config

    async def handle(self, task: ChunkTask) -> Dispatch | None:
        """Run the chunk if this worker can; the message the chunk needs next, if any."""
        status = await self.queue.status(task)
        if status is None or not _waiting(status.state, status.job_state):
            return None
        if (status.model, status.version) not in self.gateway.servable():
            logger.info(
                "jobs: chunk %s/%d is for %s %s, not served here; back to the queue",
                task.job_id,
                task.index,
                status.model,
                status.version,
            )
            return Dispatch(task, self.config.queue_for(status.model), NOT_SERVED_DELAY_S)
        await self.processor.run(task)
        return await self.next_message(task)

    async def next_message(self, task: ChunkTask) -> Dispatch | None:
        """The message an unfinished chunk needs so that someone runs it (see the table)."""
        status = await self.queue.status(task)
        if status is None or not _waiting(status.state, status.job_state):
            return None
        now = utcnow()
        if status.state == ChunkState.PENDING:
            delay = _seconds_until(status.next_attempt_at, now)
        else:
            delay = _seconds_until(status.lease_expires_at, now) + LEASE_SLACK_S
        return Dispatch(task, self.config.queue_for(status.model), delay)

    async def unpublished(self, task: ChunkTask) -> None:
        """The chunk's next message could not be sent: leave it to the server's outbox."""
        await self.queue.mark_published([task], published=False)


def _waiting(state: str, job_state: str) -> bool:
    return state in UNFINISHED_CHUNK_STATES and job_state in ACTIVE_JOB_STATES


def _seconds_until(moment: dt.datetime | None, now: dt.datetime) -> float:
    if moment is None:
        return 0.0
    if moment.tzinfo is None:  # SQLite hands back naive UTC
        moment = moment.replace(tzinfo=dt.UTC)
    return max(0.0, (moment - now).total_seconds())
