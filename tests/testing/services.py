"""Services the test kit's tests drive."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from modelserve import ItemError, Service, batching


class Reading(BaseModel):
    celsius: float = Field(ge=-273.15, le=1000)
    label: str = Field(min_length=1, max_length=12)


class Converted(BaseModel):
    fahrenheit: float
    label: str


class Thermometer(Service[Reading, Converted]):
    """Pure per item: batch invariant. Refuses the label "broken" per item."""

    name = "thermometer"
    isolation = "inline"
    batching = batching(max_batch_size=8, max_wait_ms=0)

    def predict(self, batch: list[Reading]) -> list[Converted | ItemError]:
        return [
            ItemError("this sensor is broken", code="broken")
            if r.label == "broken"
            else Converted(fahrenheit=r.celsius * 9 / 5 + 32, label=r.label)
            for r in batch
        ]


class Count(BaseModel):
    seen: int


class Crowd(Service[Reading, Count]):
    """Answers how many items its batch held: not batch invariant."""

    name = "crowd"
    batching = batching(max_batch_size=8, max_wait_ms=20)

    def predict(self, batch: list[Reading]) -> list[Count]:
        return [Count(seen=len(batch)) for _ in batch]


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


class Inner(BaseModel):
    weight: int = Field(gt=0, lt=50)
    tags: list[str] = Field(default_factory=list, max_length=3)


class Everything(BaseModel):
    """Most shapes a schema takes: nested models, optionals, enums, literals, lists, bytes."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "inner": {"weight": 7},
                    "colour": "red",
                    "mode": "a",
                    "scores": [0.5],
                    "blob": "xyz",
                    "flag": True,
                }
            ]
        }
    )

    inner: Inner
    colour: Colour
    mode: Literal["a", "b"]
    scores: list[float] = Field(min_length=1, max_length=4)
    blob: bytes
    flag: bool
    note: str | None = None
    count: int | None = Field(default=None, ge=0)


class Echo(BaseModel):
    ok: bool


class Shapes(Service[Everything, Echo]):
    """Takes every shape; answers ok."""

    name = "shapes"
    isolation = "inline"
    batching = batching(max_batch_size=4, max_wait_ms=0)

    def predict(self, batch: list[Everything]) -> list[Echo]:
        return [Echo(ok=True) for _ in batch]


class Blob(BaseModel):
    data: bytes = Field(max_length=64)


class Size(BaseModel):
    size: int


class Sizer(Service[Blob, Size]):
    """Takes raw bytes."""

    name = "sizer"
    isolation = "inline"
    batching = batching(max_batch_size=4, max_wait_ms=0)

    def predict(self, batch: list[Blob]) -> list[Size]:
        return [Size(size=len(b.data)) for b in batch]


class Fragile(Service[Reading, Converted]):
    """Its setup fails."""

    name = "fragile"

    def setup(self, device: str) -> None:
        raise RuntimeError("the weights file is missing")

    def predict(self, batch: list[Reading]) -> list[Converted]:
        raise AssertionError("never loaded")


class Coded(BaseModel):
    code: str = Field(pattern=r"^[A-Z]{3}-\d{4}$")


class Lookup(Service[Coded, Echo]):
    """A pattern the generator cannot meet and no examples."""

    name = "lookup"
    isolation = "inline"

    def predict(self, batch: list[Coded]) -> list[Echo]:
        return [Echo(ok=True) for _ in batch]
