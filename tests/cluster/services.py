"""What the cluster rehearsal serves (`make cluster`, tests/cluster): two tiny models.

`echo` carries the load of the scenarios; `limited` exists so that a per-model rate limit
(MODELSERVE_AUTH__MODEL_RATE_LIMITS, 60/minute) can be checked without limiting the load.
Outputs are exact, so every answer can be checked, and nothing is loaded from disk.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from modelserve import Service, batching


class Number(BaseModel):
    x: float = Field(ge=-1e9, le=1e9)


class Doubled(BaseModel):
    y: float


class Echo(Service[Number, Doubled]):
    """Doubles its input."""

    name = "echo"
    batching = batching(max_batch_size=32, max_wait_ms=1)

    def predict(self, batch: list[Number]) -> list[Doubled]:
        return [Doubled(y=2 * n.x) for n in batch]


class Limited(Service[Number, Doubled]):
    """The same, under the cluster's per-model rate limit."""

    name = "limited"
    batching = batching(max_batch_size=32, max_wait_ms=1)

    def predict(self, batch: list[Number]) -> list[Doubled]:
        return [Doubled(y=2 * n.x) for n in batch]
