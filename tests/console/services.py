"""Services for the console's in-process tests: one of every playground input kind."""

from __future__ import annotations

from pydantic import BaseModel, Field

from modelserve import Service, batching


class Measurements(BaseModel):
    """A number, an integer, a list of numbers, a flag and a free text."""

    scale: float = Field(gt=0, description="Multiplies the total", examples=[2.0])
    repeat: int = Field(1, ge=1, le=10)
    values: list[float] = Field(min_length=1, max_length=16)
    negate: bool = False
    note: str = ""


class Total(BaseModel):
    total: float
    note: str


class Scaler(Service[Measurements, Total]):
    """Adds up values, times scale and repeat."""

    name = "scaler"
    batching = batching(max_batch_size=8, max_wait_ms=0)

    def predict(self, batch: list[Measurements]) -> list[Total]:
        out = []
        for item in batch:
            total = sum(item.values) * item.scale * item.repeat
            out.append(Total(total=-total if item.negate else total, note=item.note))
        return out


class Blob(BaseModel):
    data: bytes


class Size(BaseModel):
    size: int


class Sizer(Service[Blob, Size]):
    """How many bytes were sent: a raw-body input."""

    name = "sizer"
    batching = batching(max_batch_size=8, max_wait_ms=0)

    def predict(self, batch: list[Blob]) -> list[Size]:
        return [Size(size=len(item.data)) for item in batch]
