"""A server whose one model cannot load next to two that can (R19).

Kept apart from `services.py` because a failed model keeps `/readyz` at 503 by design.
"""

from __future__ import annotations

from pydantic import BaseModel

from modelserve import Service

BROKEN_REASON = "weights file model.bin is truncated (expected 4096 bytes, found 17)"


class Number(BaseModel):
    x: float


class Doubled(BaseModel):
    y: float


class Broken(Service[Number, Doubled]):
    """Its setup raises, as a corrupted model file would."""

    name = "broken"

    def setup(self, device: str) -> None:
        raise RuntimeError(BROKEN_REASON)

    def predict(self, batch: list[Number]) -> list[Doubled]:
        raise AssertionError("predict must never run on a model that failed to load")


class Doubler(Service[Number, Doubled]):
    """A healthy neighbour that must keep serving."""

    name = "doubler"

    def predict(self, batch: list[Number]) -> list[Doubled]:
        return [Doubled(y=2 * n.x) for n in batch]


class Halver(Service[Number, Doubled]):
    """A second healthy neighbour, so 'others ready' means more than one."""

    name = "halver"
    version = "2"

    def predict(self, batch: list[Number]) -> list[Doubled]:
        return [Doubled(y=n.x / 2) for n in batch]
