"""`RetentionSweeper`: what batch jobs leave behind is removed once nothing needs it.

Without it a busy server's disk and database only grow: every job keeps its chunks, failed rows
and result blobs, every upload its parts, and an input-folder file makes a new upload at each
scheduled tick. Each pass (every `retention_interval_s`, in every server that runs the
scheduler; passes on several replicas at once only find less to do):

1. deletes jobs finished (succeeded, failed, cancelled) more than `retention_days` ago, with
   their chunks and failed rows; their results are gone with them (`GET .../results` is 404);
2. deletes uploads no job reads and no schedule names: complete ones `upload_retention_hours`
   after they completed, open ones (abandoned resumable uploads) that long after they started;
3. removes blobs from this server's artifact store that no row names (no registry version's
   file, no upload's part, no chunk's results) and that were last written more than
   `blob_grace_hours` ago. The grace covers every blob between its write and the row that will
   name it: an upload's part before it is recorded, a chunk's results before the chunk is
   marked done, a registry upload before its version is created. A blob written again is young
   again (the store touches it), so a re-upload of old content is never lost to a pass.

The artifact store is shared with the registry, which is why step 3 asks every table that
names blobs, not only the jobs' ones.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from modelserve.config import JobsConfig
from modelserve.db.base import utcnow
from modelserve.db.engine import Database
from modelserve.db.repos import retention as repo
from modelserve.jobs.periodic import Periodic
from modelserve.registry.artifacts import ArtifactStore

logger = logging.getLogger("modelserve.jobs")

# Rows deleted per transaction (short transactions: the queue's writers wait on them), and
# blobs looked up per query.
BATCH = 500


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What one pass removed."""

    jobs: int = 0
    uploads: int = 0
    blobs: int = 0
    bytes_freed: int = 0


class RetentionSweeper:
    """Removes expired jobs, unneeded uploads and unnamed blobs (module docstring)."""

    def __init__(
        self,
        *,
        database: Database,
        store: ArtifactStore,
        config: JobsConfig,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self._database = database
        self._store = store
        self._config = config
        self._clock = clock
        self._loop = Periodic("modelserve-jobs-retention", self.sweep, config.retention_interval_s)

    def start(self) -> None:
        """Sweep now and then every `retention_interval_s`."""
        self._loop.start()

    async def stop(self) -> None:
        """Stop sweeping (a pass in flight is cancelled between two transactions)."""
        await self._loop.stop()

    async def sweep(self) -> SweepReport:
        """One pass: jobs, then uploads (a deleted job may free its upload), then blobs."""
        now = self._clock()
        jobs = await self._expire_jobs(now)
        uploads = await self._expire_uploads(now)
        blobs, freed = await self._remove_blobs(now)
        report = SweepReport(jobs, uploads, blobs, freed)
        if jobs or uploads or blobs:
            logger.info(
                "jobs retention: removed %d jobs, %d uploads, %d blobs (%d bytes)",
                jobs,
                uploads,
                blobs,
                freed,
            )
        return report

    async def _expire_jobs(self, now: dt.datetime) -> int:
        config = self._config
        if not config.retention_days:  # 0: finished jobs are kept forever
            return 0
        before = now - dt.timedelta(days=config.retention_days)
        removed = 0
        while True:
            async with self._database.session() as session:
                ids = await repo.expired_jobs(session=session, before=before, limit=BATCH)
                removed += await repo.delete_jobs(session=session, job_ids=ids)
            if len(ids) < BATCH:
                return removed

    async def _expire_uploads(self, now: dt.datetime) -> int:
        before = now - dt.timedelta(hours=self._config.upload_retention_hours)
        removed = 0
        while True:
            async with self._database.session() as session:
                keep = await repo.scheduled_uploads(session=session)
                ids = await repo.expired_uploads(
                    session=session,
                    open_before=before,
                    complete_before=before,
                    keep=keep,
                    limit=BATCH,
                )
                removed += await repo.delete_uploads(session=session, upload_ids=ids)
            if len(ids) < BATCH:
                return removed

    async def _remove_blobs(self, now: dt.datetime) -> tuple[int, int]:
        before = (now - dt.timedelta(hours=self._config.blob_grace_hours)).timestamp()
        # Listing the store is file-system work: off the event loop.
        old = await asyncio.to_thread(
            lambda: [b.sha256 for b in self._store.stored() if b.written_at < before]
        )
        removed = freed = 0
        for start in range(0, len(old), BATCH):
            batch = old[start : start + BATCH]
            async with self._database.session() as session:
                named = await repo.named_blobs(session=session, digests=batch)
            for digest in batch:
                if digest in named:
                    continue
                size = await asyncio.to_thread(self._store.delete_if_older, digest, before)
                if size:
                    removed += 1
                    freed += size
        return removed, freed
