"""Small services the end-to-end tests serve with `modelserve serve tests/e2e/services.py`.

Each one exists to make one class of scenario easy to trigger: no heavy dependencies, no model
files, outputs that a test can predict exactly. Every service here loads; the failing one lives
in `broken_services.py` so that `/readyz` of this file's server turns 200.
"""

from __future__ import annotations

import math
import time
from typing import Annotated

from pydantic import BaseModel, Field

from modelserve import Service, batching

# Cap on any sleep a client can ask for, so a bad test cannot pin a replica for long.
MAX_SLEEP_S = 5.0
TEXT_MAX_LENGTH = 10_000
FEATURES = 3
# The graceful-shutdown test holds exactly this many requests in one running batch.
SLEEPER_BATCH = 50


class Vector(BaseModel):
    values: Annotated[list[float], Field(min_length=1, max_length=256)]


class VectorSum(BaseModel):
    values: list[float]
    total: float


class Echo(Service[Vector, VectorSum]):
    """Returns the input vector unchanged, with its sum."""

    name = "echo"
    batching = batching(max_batch_size=16, max_wait_ms=2)

    def predict(self, batch: list[Vector]) -> list[VectorSum]:
        return [VectorSum(values=v.values, total=math.fsum(v.values)) for v in batch]


Row = Annotated[list[float], Field(min_length=FEATURES, max_length=FEATURES)]


class Matrix(BaseModel):
    rows: Annotated[list[Row], Field(min_length=1, max_length=64)]


class RowSums(BaseModel):
    sums: list[float]


class MatrixSum(Service[Matrix, RowSums]):
    """A model with a fixed feature count (3) per row, for shape errors."""

    name = "matrix"
    batching = batching(max_batch_size=8, max_wait_ms=1)

    def predict(self, batch: list[Matrix]) -> list[RowSums]:
        return [RowSums(sums=[math.fsum(row) for row in m.rows]) for m in batch]


class Nap(BaseModel):
    seconds: Annotated[float, Field(ge=0, le=MAX_SLEEP_S)] = 0.0
    tag: int = 0


class Napped(BaseModel):
    tag: int
    batch_size: int


def _nap(batch: list[Nap]) -> list[Napped]:
    # One model call for the whole batch, as long as its longest request asks for.
    time.sleep(max(item.seconds for item in batch))
    return [Napped(tag=item.tag, batch_size=len(batch)) for item in batch]


class Slow(Service[Nap, Napped]):
    """Sleeps as long as asked; a short deadline and two replicas for R7."""

    name = "slow"
    batching = batching(max_batch_size=1, max_queue=4, timeout_s=1.0)
    replicas = 2

    def predict(self, batch: list[Nap]) -> list[Napped]:
        return _nap(batch)


class Gate(Service[Nap, Napped]):
    """Capacity 2 running + 4 queued and a long deadline, for overload (R6)."""

    name = "gate"
    batching = batching(max_batch_size=1, max_queue=4, timeout_s=15.0)
    replicas = 2

    def predict(self, batch: list[Nap]) -> list[Napped]:
        return _nap(batch)


class Sleeper(Service[Nap, Napped]):
    """Holds SLEEPER_BATCH requests in one sleeping batch, for graceful shutdown (R1).

    The batch closes only when full (or after 10 s), so a running batch means every request
    of the test is in flight inside the model.
    """

    name = "sleeper"
    batching = batching(
        max_batch_size=SLEEPER_BATCH, max_wait_ms=10_000, max_queue=256, timeout_s=30.0
    )

    def predict(self, batch: list[Nap]) -> list[Napped]:
        return _nap(batch)


class Burn(BaseModel):
    seconds: Annotated[float, Field(ge=0, le=2.0)]


class Burned(BaseModel):
    loops: int


class Burner(Service[Burn, Burned]):
    """Spins in pure Python, holding the GIL, for the blocked-loop guard (R8)."""

    name = "burner"
    batching = batching(max_batch_size=1, max_queue=256, timeout_s=30.0)
    replicas = 2

    def predict(self, batch: list[Burn]) -> list[Burned]:
        outputs = []
        for item in batch:
            end = time.perf_counter() + item.seconds
            loops = 0
            while time.perf_counter() < end:
                loops += 1
            outputs.append(Burned(loops=loops))
        return outputs


class Scale(BaseModel):
    factor: float


class Scaled(BaseModel):
    values: list[float]


class NotFinite(Service[Scale, Scaled]):
    """Returns NaN and infinities next to a finite value (V7)."""

    name = "nan"

    def predict(self, batch: list[Scale]) -> list[Scaled]:
        return [
            Scaled(values=[item.factor, math.nan, math.inf, -math.inf, item.factor * math.inf])
            for item in batch
        ]


class Text(BaseModel):
    text: Annotated[str, Field(max_length=TEXT_MAX_LENGTH)]


class TextEcho(BaseModel):
    text: str
    code_points: int
    utf8_bytes: int


class EchoText(Service[Text, TextEcho]):
    """Returns the string unchanged with its length in code points and UTF-8 bytes (V10)."""

    name = "text"
    batching = batching(max_batch_size=8, max_wait_ms=1)

    def predict(self, batch: list[Text]) -> list[TextEcho]:
        return [
            TextEcho(text=t.text, code_points=len(t.text), utf8_bytes=len(t.text.encode("utf-8")))
            for t in batch
        ]
