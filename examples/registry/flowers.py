"""Iris species from flower measurements, served from the model registry.

Unlike `examples/iris.py`, this service trains nothing: each registry version carries its own
fitted parameters (`params.json`, written by `train.py` next to this file) and `setup` reads
them from `self.artifacts`, the folder of the version being loaded. Pushing new parameters
makes a new version; promoting it swaps them in without a restart (see docs/registry.md).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from modelserve import Service, batching

Species = Literal["setosa", "versicolor", "virginica"]
SPECIES: tuple[Species, ...] = ("setosa", "versicolor", "virginica")
PARAMS_FILE = "params.json"


class Flower(BaseModel):
    """Four measurements of one iris flower, in centimetres."""

    sepal_length: float = Field(gt=0, lt=100, examples=[5.9])
    sepal_width: float = Field(gt=0, lt=100, examples=[3.0])
    petal_length: float = Field(gt=0, lt=100, examples=[4.2])
    petal_width: float = Field(gt=0, lt=100, examples=[1.5])


class Prediction(BaseModel):
    """The most likely species and the probability of every species."""

    species: Species
    probabilities: dict[Species, float]


class Params(BaseModel):
    """`params.json`: a multinomial logistic regression, validated when loaded."""

    model_config = ConfigDict(extra="forbid")

    classes: list[Species] = Field(min_length=3, max_length=3)
    coef: list[list[float]] = Field(min_length=3, max_length=3)
    intercept: list[float] = Field(min_length=3, max_length=3)
    held_out_accuracy: float = Field(ge=0, le=1)


class Flowers(Service[Flower, Prediction]):
    """Classify an iris flower with the parameters of the registry version being served."""

    name = "flowers"
    batching = batching(max_batch_size=64)

    def setup(self, device: str) -> None:
        if self.artifacts is None:
            raise RuntimeError("flowers is served from the registry: push a version first")
        params = Params.model_validate_json((self.artifacts / PARAMS_FILE).read_bytes())
        self.coef = np.asarray(params.coef, dtype=np.float64)
        self.intercept = np.asarray(params.intercept, dtype=np.float64)

    def predict(self, batch: list[Flower]) -> list[Prediction]:
        features = np.array(
            [[f.sepal_length, f.sepal_width, f.petal_length, f.petal_width] for f in batch]
        )
        logits = features @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        probabilities = exp / exp.sum(axis=1, keepdims=True)
        return [
            Prediction(
                species=SPECIES[int(row.argmax())],
                probabilities=dict(zip(SPECIES, row.tolist(), strict=True)),
            )
            for row in probabilities
        ]
