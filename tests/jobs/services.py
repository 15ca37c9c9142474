"""Small services for the job tests: fast, deterministic, with a row the model refuses."""

from __future__ import annotations

import os
import time

from pydantic import BaseModel, Field

from modelserve import ItemError, Service, batching


class Point(BaseModel):
    x: float = Field(ge=-1e6, le=1e6)
    label: str = ""


class Doubled(BaseModel):
    y: float
    label: str


class Doubler(Service[Point, Doubled]):
    """y = 2x; a negative x is refused by the model itself (an ItemError), not by its schema."""

    name = "doubler"
    batching = batching(max_batch_size=16, max_wait_ms=1)

    def setup(self, device: str) -> None:
        # A real server process may be asked to go slowly, to be killed in the middle of a job.
        self.delay_s = float(os.environ.get("JOBS_TEST_BATCH_DELAY_S", "0"))

    def predict(self, batch: list[Point]) -> list[Doubled | ItemError]:
        if self.delay_s:
            time.sleep(self.delay_s)
        return [
            ItemError("x must not be negative", code="negative")
            if p.x < 0
            else Doubled(y=2 * p.x, label=p.label)
            for p in batch
        ]
