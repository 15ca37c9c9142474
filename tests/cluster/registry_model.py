"""The registry model of the cluster rehearsal: its versions are pushed and promoted through
nginx, and every answer names the version that gave it (`x-model-version`).

It reads the one artifact file each version carries, so a version whose files did not reach
the shared artifact store fails to load instead of passing unnoticed.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from modelserve import Service, batching

ARTIFACT = "factor.txt"


class Number(BaseModel):
    x: float = Field(ge=-1e9, le=1e9)


class Scaled(BaseModel):
    y: float


class Scaler(Service[Number, Scaled]):
    """Multiplies its input by the factor stored with the version."""

    name = "scaler"
    batching = batching(max_batch_size=32, max_wait_ms=1)

    def setup(self, device: str) -> None:
        assert self.artifacts is not None, "a registry version always has its folder"
        self.factor = float((self.artifacts / ARTIFACT).read_text())

    def predict(self, batch: list[Number]) -> list[Scaled]:
        return [Scaled(y=self.factor * n.x) for n in batch]
