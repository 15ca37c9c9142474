"""Services pushed to the registry by the tests: each reads its version's files in `setup`."""

from __future__ import annotations

import json
import os

import numpy as np
from pydantic import BaseModel, Field

from modelserve import Service, batching

# R4: a version must hold a noticeable amount of memory, so that unloading it is measurable.
BALLAST_BYTES = int(os.environ.get("REGISTRY_TEST_BALLAST_BYTES", str(50 * 1024 * 1024)))


class X(BaseModel):
    x: float = Field(ge=-1e6, le=1e6)


class Y(BaseModel):
    y: float


class Scaled(Service[X, Y]):
    """Multiplies by the `scale` in its version's `config.json`: versions answer differently."""

    name = "scaled"
    batching = batching(max_batch_size=16, max_wait_ms=1)

    def setup(self, device: str) -> None:
        assert self.artifacts is not None, "served from the registry only"
        config = json.loads((self.artifacts / "config.json").read_text())
        self.scale = float(config["scale"])

    def predict(self, batch: list[X]) -> list[Y]:
        return [Y(y=item.x * self.scale) for item in batch]


class Broken(Scaled):
    """A version whose weights cannot be loaded."""

    name = "broken"

    def setup(self, device: str) -> None:
        raise RuntimeError("weights are corrupt")


class Heavy(Scaled):
    """Scaled, holding BALLAST_BYTES of weights (touched, so they are resident)."""

    name = "heavy"

    def setup(self, device: str) -> None:
        super().setup(device)
        self.ballast = np.ones(BALLAST_BYTES // 8, dtype=np.float64)

    def teardown(self) -> None:
        self.ballast = np.zeros(0)
