"""Iris species from four flower measurements: a scikit-learn model served by modelserve.

    modelserve serve examples/iris.py
    curl -s localhost:8000/v1/models/iris/predict -H 'content-type: application/json' \\
        -d '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'

The first start trains a logistic regression on scikit-learn's bundled iris data (no download) and
stores its fitted parameters as JSON under `$MODELSERVE_DATA_DIR/models/iris/`; later starts read
them back. JSON rather than pickle: loading a pickle runs code, and the data directory is a place a
careless deployment may let others write to. A missing, corrupt or mismatched file is replaced by
training again.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelserve import Service, batching

logger = logging.getLogger("examples.iris")

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
SEED = 0
TEST_SIZE = 0.3
# Bumped whenever training changes, so a cache written by an older release is not reused.
FORMAT_VERSION = 1

Species = Literal["setosa", "versicolor", "virginica"]
SPECIES: tuple[Species, ...] = ("setosa", "versicolor", "virginica")


class Flower(BaseModel):
    """Four measurements of one iris flower, in centimetres."""

    # Real flowers measure a few centimetres: the bounds catch zeros, signs and unit mix-ups.
    sepal_length: float = Field(gt=0, lt=100, description="Sepal length (cm)", examples=[5.1])
    sepal_width: float = Field(gt=0, lt=100, description="Sepal width (cm)", examples=[3.5])
    petal_length: float = Field(gt=0, lt=100, description="Petal length (cm)", examples=[1.4])
    petal_width: float = Field(gt=0, lt=100, description="Petal width (cm)", examples=[0.2])


class Prediction(BaseModel):
    """The most likely species and the probability of every species."""

    species: Species
    class_index: int = Field(ge=0, le=2, description="Index of `species` in the training labels")
    probabilities: dict[Species, float] = Field(description="Probability per species; sums to 1")


class _Params(BaseModel):
    """The cache file: validated on load, so a damaged file is detected instead of trusted."""

    model_config = ConfigDict(extra="forbid")

    format_version: Literal[1]
    classes: list[Species] = Field(min_length=3, max_length=3)
    coef: list[list[float]] = Field(min_length=3, max_length=3)
    intercept: list[float] = Field(min_length=3, max_length=3)
    held_out_accuracy: float = Field(ge=0, le=1)


@dataclass(frozen=True, slots=True)
class IrisModel:
    """A fitted multinomial logistic regression, evaluated with NumPy alone.

    Serving needs only `softmax(x @ coef.T + intercept)`; keeping just those arrays makes the
    cache a plain JSON file and keeps scikit-learn out of the request path.
    """

    coef: NDArray[np.float64]  # (3 classes, 4 features)
    intercept: NDArray[np.float64]  # (3,)

    def predict_proba(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        """Class probabilities, one row per row of `features` (n, 4)."""
        logits = features @ self.coef.T + self.intercept
        # Subtracting the row maximum keeps exp() from overflowing; softmax is unchanged by it.
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        probabilities: NDArray[np.float64] = exp / exp.sum(axis=1, keepdims=True)
        return probabilities


def split() -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]:
    """The fixed, stratified train/held-out split: (X_train, X_test, y_train, y_test)."""
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    features, labels = load_iris(return_X_y=True)
    parts: list[NDArray[Any]] = train_test_split(
        features, labels, test_size=TEST_SIZE, stratify=labels, random_state=SEED
    )
    x_train, x_test, y_train, y_test = parts
    return x_train, x_test, y_train, y_test


def train() -> tuple[IrisModel, float]:
    """Fit on the training split; return the model and its accuracy on the held-out split."""
    from sklearn.linear_model import LogisticRegression

    x_train, x_test, y_train, y_test = split()
    estimator = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    model = IrisModel(
        coef=np.asarray(estimator.coef_, dtype=np.float64),
        intercept=np.asarray(estimator.intercept_, dtype=np.float64),
    )
    predicted = model.predict_proba(np.asarray(x_test, dtype=np.float64)).argmax(axis=1)
    accuracy = float((predicted == y_test).mean())
    return model, accuracy


def cache_path() -> Path:
    """Where the fitted parameters are stored (read once, when the service starts)."""
    data_dir = Path(os.environ.get("MODELSERVE_DATA_DIR", ".modelserve"))
    return data_dir / "models" / "iris" / f"params-v{FORMAT_VERSION}.json"


def save(model: IrisModel, accuracy: float, path: Path) -> None:
    """Write the parameters atomically, so a concurrent reader never sees half a file."""
    params = _Params(
        format_version=FORMAT_VERSION,
        classes=list(SPECIES),
        coef=model.coef.tolist(),
        intercept=model.intercept.tolist(),
        held_out_accuracy=accuracy,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(params.model_dump_json(indent=2))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> IrisModel:
    """Read parameters written by `save`; raise ValueError if the file is unusable."""
    try:
        params = _Params.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        raise ValueError(f"cannot use {path}: {exc}") from exc
    if tuple(params.classes) != SPECIES or any(len(row) != len(FEATURES) for row in params.coef):
        raise ValueError(f"cannot use {path}: unexpected classes or shape")
    coef = np.asarray(params.coef, dtype=np.float64)
    intercept = np.asarray(params.intercept, dtype=np.float64)
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise ValueError(f"cannot use {path}: non-finite parameters")
    return IrisModel(coef=coef, intercept=intercept)


def load_or_train(path: Path) -> IrisModel:
    """The cached model, or a freshly trained one (then cached) when there is none usable."""
    if path.exists():
        try:
            return load(path)
        except ValueError as exc:
            logger.warning("%s; training again", exc)
    model, accuracy = train()
    logger.info("trained iris model, held-out accuracy %.3f", accuracy)
    save(model, accuracy, path)
    return model


class Iris(Service[Flower, Prediction]):
    """Classify an iris flower as setosa, versicolor or virginica from its sepal and petal sizes.

    A logistic regression trained on the classic iris data set (Fisher, 1936). Returns the most
    likely species and the probability of each of the three.
    """

    name = "iris"
    # The model costs microseconds per batch, so waiting for company would only add latency;
    # requests that arrive while a batch runs still go together in the next one.
    batching = batching(max_batch_size=64, max_wait_ms=0)

    def setup(self, device: str) -> None:
        # NumPy only: the device is irrelevant for a 3x4 matrix product.
        self.model = load_or_train(cache_path())

    def predict(self, batch: list[Flower]) -> list[Prediction]:
        features = np.array(
            [[f.sepal_length, f.sepal_width, f.petal_length, f.petal_width] for f in batch],
            dtype=np.float64,
        )
        probabilities = self.model.predict_proba(features)
        best = probabilities.argmax(axis=1).tolist()
        return [
            Prediction(
                species=SPECIES[index],
                class_index=index,
                probabilities=dict(zip(SPECIES, row, strict=True)),
            )
            for index, row in zip(best, probabilities.tolist(), strict=True)
        ]
