"""Small services for the observability tests."""

from __future__ import annotations

from pydantic import BaseModel, Field

from modelserve import Service, batching


class Point(BaseModel):
    x: list[float] = Field(min_length=1, max_length=8)


class Score(BaseModel):
    score: float


class Scorer(Service[Point, Score]):
    """Sums the features: a model whose inputs and outputs are all numeric leaves."""

    name = "scorer"
    version = "2"
    batching = batching(max_batch_size=16, max_wait_ms=1)

    def predict(self, batch: list[Point]) -> list[Score]:
        return [Score(score=sum(p.x)) for p in batch]


class Login(BaseModel):
    username: str
    password: str = Field(min_length=12)


class Boom(Service[Point, Score]):
    """Fails every batch with a message that quotes a credential, as careless code does."""

    name = "boom"

    def predict(self, batch: list[Point]) -> list[Score]:
        raise RuntimeError("upstream refused token=abc123secretvalue")
