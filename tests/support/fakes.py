"""Fakes for the engine's seams: executors whose work completes on the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelserve.types import BatchDone

Behaviour = Callable[[list[Any]], list[Any]]


def double(batch: list[Any]) -> list[Any]:
    """Default model: doubles numbers."""
    return [x * 2 for x in batch]


@dataclass
class FakeExecutor:
    """Runs `behaviour` after `cost_s` of loop time; records what it ran and when."""

    behaviour: Behaviour = double
    cost_s: float = 0.01
    batches: list[list[Any]] = field(default_factory=list)
    started_at: list[float] = field(default_factory=list)
    _busy: bool = False

    @property
    def busy(self) -> bool:
        return self._busy

    def run_batch(self, items: list[Any], done: BatchDone) -> None:
        loop = asyncio.get_running_loop()
        self.batches.append(list(items))
        self.started_at.append(loop.time())
        self._busy = True

        def finish() -> None:
            self._busy = False
            try:
                result: list[Any] | BaseException = self.behaviour(items)
            except Exception as exc:
                result = exc
            done(result)

        loop.call_later(self.cost_s, finish)
