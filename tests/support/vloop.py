"""An asyncio event loop on virtual time, for testing timing logic without sleeping.

The loop's clock only moves when nothing is ready to run: then it jumps straight to the next
scheduled timer. Sleeps of minutes take microseconds and results never depend on machine load.
Only for code whose work completes through the loop itself (fakes, not real threads).
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._vloop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        events = super().select(0)
        if not events and timeout is not None and timeout > 0:
            self._vloop.advance(timeout)
        elif not events and timeout is None:
            raise RuntimeError("virtual-time loop would block forever: nothing is scheduled")
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose `time()` is virtual and starts at 1000.0."""

    def __init__(self) -> None:
        self._now = 1000.0
        super().__init__(selector=_VirtualSelector(self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move virtual time forward."""
        self._now += seconds


def run_virtual(coro: Any) -> Any:
    """Run a coroutine to completion on a fresh virtual-time loop."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
