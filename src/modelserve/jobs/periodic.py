"""`Periodic`: a pass a server runs now and then every few seconds, until it stops.

The scheduler, the retention sweeper and the outbox relay are such passes. A `wakeup` event
starts the next pass at once (the relay's, when a submit in this process queued chunks). A
failed pass is logged and the loop
goes on (a database outage is one warning a pass, not a traceback): one bad pass must never
end the loop for the life of the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from modelserve.errors import DatabaseUnavailableError

logger = logging.getLogger("modelserve.jobs")


class Periodic:
    """Runs `run()` at start and then every `interval_s` (or when `wakeup` is set), as the
    task `name`."""

    def __init__(
        self,
        name: str,
        run: Callable[[], Awaitable[Any]],
        interval_s: float,
        *,
        wakeup: asyncio.Event | None = None,
    ) -> None:
        self.name = name
        self._run = run
        self._interval_s = interval_s
        self._wakeup = wakeup
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the loop is started."""
        return self._task is not None

    def start(self) -> None:
        """Start the loop on the running event loop (once)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._forever(), name=self.name)

    async def stop(self) -> None:
        """Stop the loop; a pass in flight is cancelled."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _forever(self) -> None:
        wakeup = self._wakeup
        while True:
            if wakeup is not None:
                wakeup.clear()  # before the pass: a wake-up during it starts the next one
            try:
                await self._run()
            except DatabaseUnavailableError:
                logger.warning("%s: the database is unavailable; trying again", self.name)
            except Exception:
                logger.exception("%s: a pass failed", self.name)
            if wakeup is None:
                await asyncio.sleep(self._interval_s)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), self._interval_s)
