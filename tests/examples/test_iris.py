"""examples/iris.py: accuracy, probabilities, validation and the parameter cache, over HTTP
and through the test kit (`modelserve.testing`)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelserve.testing import (
    assert_batch_invariant,
    assert_refuses_invalid_inputs,
    check_service,
    sample_inputs,
)

if TYPE_CHECKING:
    from .conftest import Kit, Serve

PREDICT = "/v1/models/iris/predict"
SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


@pytest.fixture
def iris(example: Callable[[str], ModuleType]) -> ModuleType:
    return example("iris")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELSERVE_DATA_DIR", str(tmp_path))
    return tmp_path


def as_inputs(iris: ModuleType, rows: Any) -> list[dict[str, float]]:
    return [dict(zip(iris.FEATURES, map(float, row), strict=True)) for row in rows]


def predict_batch(client: TestClient, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = client.post(PREDICT + "/batch", json={"inputs": inputs})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["errors"] == []
    outputs: list[dict[str, Any]] = body["outputs"]
    return outputs


def test_held_out_accuracy_over_http(iris: ModuleType, data_dir: Path, serve: Serve) -> None:
    _, x_test, _, y_test = iris.split()
    with serve("iris") as client:
        outputs = predict_batch(client, as_inputs(iris, x_test))

    assert len(outputs) == len(y_test)
    predicted = np.array([out["class_index"] for out in outputs])
    assert (predicted == y_test).mean() > 0.9
    for out in outputs:
        probabilities = out["probabilities"]
        assert list(probabilities) == list(iris.SPECIES)
        assert math.isclose(sum(probabilities.values()), 1.0, abs_tol=1e-9)
        assert all(0.0 <= p <= 1.0 for p in probabilities.values())
        assert out["species"] == iris.SPECIES[out["class_index"]]
        assert max(probabilities, key=probabilities.__getitem__) == out["species"]


def test_a_batch_answers_as_its_items_alone(iris: ModuleType, data_dir: Path, kit: Kit) -> None:
    _, x_test, _, _ = iris.split()
    with kit("iris") as client:
        # Held-out flowers and flowers made from the schema's bounds and examples. Equal up to
        # rounding: a matrix product may sum in another order for another batch size.
        flowers = as_inputs(iris, x_test[:5]) + sample_inputs(client.spec, 16)
        assert_batch_invariant(client, flowers, abs_tol=1e-12)
        setosa = client.predict(SETOSA)
        # Every malformed, mistyped or out-of-bounds body is refused before the model runs.
        assert_refuses_invalid_inputs(client)
    assert setosa.status == 200
    assert setosa.headers["x-model-version"] == "1"
    assert setosa.json()["species"] == "setosa"


def test_modelserve_check_passes(data_dir: Path, kit: Kit) -> None:
    with kit("iris") as client:
        spec = client.spec
    report = check_service(spec, rounds=1)
    assert report.passed, report.checks
    assert report.sample_input == SETOSA  # the fields' own examples come first
    assert report.sample_output["species"] == "setosa"


def test_numpy_model_matches_scikit_learn(iris: ModuleType) -> None:
    from sklearn.linear_model import LogisticRegression

    x_train, x_test, y_train, y_test = iris.split()
    model, accuracy = iris.train()
    reference = LogisticRegression(max_iter=1000).fit(x_train, y_train)

    expected = reference.predict_proba(x_test)
    np.testing.assert_allclose(model.predict_proba(x_test), expected, atol=1e-9)
    assert accuracy == pytest.approx(reference.score(x_test, y_test))
    assert accuracy > 0.9


MISSING = {k: v for k, v in SETOSA.items() if k != "petal_width"}
INVALID = [
    pytest.param(MISSING, "petal_width", id="missing"),
    pytest.param({**SETOSA, "sepal_length": -5.1}, "sepal_length", id="negative"),
    pytest.param({**SETOSA, "sepal_width": 0}, "sepal_width", id="zero"),
    pytest.param({**SETOSA, "petal_length": 100}, "petal_length", id="too-large"),
    pytest.param({**SETOSA, "petal_length": "1.4"}, "petal_length", id="string"),
    pytest.param({**SETOSA, "petal_width": None}, "petal_width", id="null"),
    pytest.param({**SETOSA, "petal_width": True}, "petal_width", id="boolean"),
    pytest.param({**SETOSA, "colour": "blue"}, "colour", id="unknown-field"),
]


def test_invalid_inputs_are_rejected_with_422(data_dir: Path, serve: Serve) -> None:
    with serve("iris") as client:
        for param in INVALID:
            body, field = param.values
            response = client.post(PREDICT, json=body)
            assert response.status_code == 422, (param.id, response.text)
            error = response.json()["error"]
            assert error["code"] == "invalid_input", param.id
            assert [field] in [d["loc"] for d in error["details"]], (param.id, error)

            batch = client.post(PREDICT + "/batch", json={"inputs": [SETOSA, body]})
            assert batch.status_code == 422, (param.id, batch.text)
            assert ["inputs", 1, field] in [d["loc"] for d in batch.json()["error"]["details"]]


def test_non_json_body_is_a_client_error(data_dir: Path, serve: Serve) -> None:
    with serve("iris") as client:
        response = client.post(
            PREDICT, content=b'{"sepal_length": NaN', headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_body"


def test_description_and_schema_are_published(data_dir: Path, serve: Serve) -> None:
    with serve("iris") as client:
        info = client.get("/v1/models/iris").json()
        openapi = client.get("/openapi.json").text
    assert info["description"].startswith("Classify an iris flower")
    assert info["batching"]["max_batch_size"] == 64
    schema = info["input_schema"]
    assert sorted(schema["required"]) == sorted(
        ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    )
    assert schema["properties"]["sepal_length"]["exclusiveMinimum"] == 0
    assert "Classify an iris flower" in openapi


def test_first_start_caches_parameters_as_json(
    iris: ModuleType, data_dir: Path, serve: Serve
) -> None:
    path = data_dir / "models" / "iris" / "params-v1.json"
    assert not path.exists()
    with serve("iris") as client:
        assert client.post(PREDICT, json=SETOSA).status_code == 200
    params = json.loads(path.read_text())
    assert params["classes"] == list(iris.SPECIES)
    assert np.asarray(params["coef"]).shape == (3, 4)
    assert params["held_out_accuracy"] > 0.9


def test_later_starts_use_the_cached_parameters(
    iris: ModuleType, data_dir: Path, serve: Serve
) -> None:
    # Parameters no training would produce: every flower is a virginica with certainty. If the
    # service retrained instead of loading the file, setosa would still come back as setosa.
    path = data_dir / "models" / "iris" / "params-v1.json"
    path.parent.mkdir(parents=True)
    model = iris.IrisModel(coef=np.zeros((3, 4)), intercept=np.array([-50.0, -50.0, 50.0]))
    iris.save(model, 1.0, path)
    before = path.read_bytes()

    with serve("iris") as client:
        answer = client.post(PREDICT, json=SETOSA).json()

    assert answer["species"] == "virginica"
    assert answer["probabilities"]["virginica"] == pytest.approx(1.0)
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"not json", id="garbage"),
        pytest.param(b'{"format_version": 1}', id="incomplete"),
        pytest.param(
            json.dumps(
                {
                    "format_version": 1,
                    "classes": ["setosa", "versicolor", "virginica"],
                    "coef": [[1, 2], [3, 4], [5, 6]],
                    "intercept": [0, 0, 0],
                    "held_out_accuracy": 1.0,
                }
            ).encode(),
            id="wrong-shape",
        ),
    ],
)
def test_unusable_cache_is_replaced_by_training(
    content: bytes, iris: ModuleType, data_dir: Path, serve: Serve
) -> None:
    path = data_dir / "models" / "iris" / "params-v1.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)

    _, x_test, _, y_test = iris.split()
    with serve("iris") as client:
        outputs = predict_batch(client, as_inputs(iris, x_test))

    predicted = np.array([out["class_index"] for out in outputs])
    assert (predicted == y_test).mean() > 0.9
    assert iris.load(path).coef.shape == (3, 4)
