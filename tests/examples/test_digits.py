"""examples/digits.py: accuracy, shape validation and the saved state dict, over HTTP and
through the test kit (`modelserve.testing`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from modelserve.testing import assert_batch_invariant, assert_refuses_invalid_inputs, sample_inputs

if TYPE_CHECKING:
    from .conftest import Kit, Serve

pytestmark = pytest.mark.slow

PREDICT = "/v1/models/digits/predict"
BLANK = [[0] * 8 for _ in range(8)]


@pytest.fixture(scope="module")
def digits(example: Callable[[str], ModuleType]) -> ModuleType:
    return example("digits")


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("digits-data")


@pytest.fixture(scope="module")
def client(trained_dir: Path, serve: Serve) -> Iterator[TestClient]:
    """One server for the module: the first start trains, which takes a few seconds."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELSERVE_DATA_DIR", str(trained_dir))
        with serve("digits") as client:
            yield client


def images(rows: Any) -> list[dict[str, Any]]:
    return [{"pixels": np.asarray(row).reshape(8, 8).tolist()} for row in rows]


def predict_all(client: TestClient, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = client.post(PREDICT + "/batch", json={"inputs": inputs})
    assert response.status_code == 200, response.text
    outputs: list[dict[str, Any]] = response.json()["outputs"]
    return outputs


def test_held_out_accuracy_over_http(digits: ModuleType, client: TestClient) -> None:
    _, x_test, _, y_test = digits.split()
    outputs = predict_all(client, images(x_test))

    predicted = np.array([out["digit"] for out in outputs])
    assert (predicted == y_test).mean() > 0.9
    for out in outputs:
        probabilities = out["probabilities"]
        assert len(probabilities) == 10
        assert math.isclose(sum(probabilities), 1.0, abs_tol=1e-5)
        assert out["digit"] == int(np.argmax(probabilities))


@pytest.mark.parametrize("model", ["digits", "digits-raw"])
def test_a_batch_answers_as_its_items_alone(
    digits: ModuleType, client: TestClient, trained_dir: Path, kit: Kit, model: str
) -> None:
    # `client` first: the module's server trains once, and the kit loads those weights.
    _, x_test, _, _ = digits.split()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELSERVE_DATA_DIR", str(trained_dir))
        with kit("digits", model) as kit_client:
            inputs = sample_inputs(kit_client.spec, 8)
            if model == "digits":
                inputs = images(x_test[:4]) + inputs
            assert_batch_invariant(kit_client, inputs, abs_tol=1e-5)
            assert_refuses_invalid_inputs(kit_client)


def with_pixel(row: int, col: int, value: Any) -> list[list[Any]]:
    pixels: list[list[Any]] = [list(r) for r in BLANK]
    pixels[row][col] = value
    return pixels


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        pytest.param({"pixels": BLANK[:7]}, ["pixels"], id="7x8"),
        pytest.param({"pixels": [*BLANK, [0] * 8]}, ["pixels"], id="9x8"),
        pytest.param({"pixels": [r[:7] for r in BLANK]}, ["pixels", 0], id="8x7"),
        pytest.param({"pixels": [*BLANK[:7], [0] * 9]}, ["pixels", 7], id="ragged"),
        pytest.param({"pixels": [0] * 64}, ["pixels"], id="flat"),
        pytest.param({"pixels": with_pixel(3, 4, 17)}, ["pixels", 3, 4], id="above-16"),
        pytest.param({"pixels": with_pixel(0, 0, -1)}, ["pixels", 0, 0], id="negative"),
        pytest.param({"pixels": with_pixel(5, 5, "7")}, ["pixels", 5, 5], id="string"),
        pytest.param({"pixels": with_pixel(2, 1, None)}, ["pixels", 2, 1], id="null"),
        pytest.param({}, ["pixels"], id="missing"),
        pytest.param({"pixels": BLANK, "label": 3}, ["label"], id="unknown-field"),
    ],
)
def test_malformed_images_are_rejected_with_422(
    body: dict[str, Any], loc: list[Any], client: TestClient
) -> None:
    response = client.post(PREDICT, json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert loc in [d["loc"] for d in error["details"]], error


def test_integer_and_fractional_pixels_are_accepted(client: TestClient) -> None:
    pixels = with_pixel(0, 0, 16)
    pixels[7][7] = 0.5
    response = client.post(PREDICT, json={"pixels": pixels})
    assert response.status_code == 200, response.text
    assert 0 <= response.json()["digit"] <= 9


def test_restart_loads_the_saved_state_dict(
    digits: ModuleType,
    client: TestClient,
    trained_dir: Path,
    serve: Serve,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = trained_dir / "models" / "digits" / "cnn-v1.pt"
    assert path.is_file()
    saved = path.read_bytes()
    modified = path.stat().st_mtime_ns
    state = torch.load(path, weights_only=True)
    assert set(state) == set(digits.DigitsNet().state_dict())

    _, x_test, _, _ = digits.split()
    inputs = images(x_test[:50])
    first = predict_all(client, inputs)

    monkeypatch.setenv("MODELSERVE_DATA_DIR", str(trained_dir))
    with serve("digits") as restarted:
        second = predict_all(restarted, inputs)

    assert [o["digit"] for o in second] == [o["digit"] for o in first]
    for a, b in zip(first, second, strict=True):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-6)
    # Not retrained: the file was neither rewritten nor replaced.
    assert path.read_bytes() == saved
    assert path.stat().st_mtime_ns == modified


def test_predictions_come_from_the_saved_weights(
    digits: ModuleType, tmp_path: Path, serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Weights no training produces: all zero but a bias that always says 7.
    net = digits.DigitsNet()
    with torch.no_grad():
        for tensor in net.parameters():
            tensor.zero_()
        net.classifier[-1].bias[7] = 10.0
    digits.save(net, tmp_path / "models" / "digits" / "cnn-v1.pt")

    _, x_test, _, _ = digits.split()
    monkeypatch.setenv("MODELSERVE_DATA_DIR", str(tmp_path))
    with serve("digits") as client:
        outputs = predict_all(client, images(x_test[:20]))

    assert {o["digit"] for o in outputs} == {7}


class _Marker:
    """Pickles to a call that creates a file: proof of code execution if it ever appears."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def test_a_pickle_in_place_of_weights_is_never_run(
    digits: ModuleType, tmp_path: Path, serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "models" / "digits" / "cnn-v1.pt"
    path.parent.mkdir(parents=True)
    torch.save({"features.0.weight": _Marker(marker)}, path)

    _, x_test, _, y_test = digits.split()
    monkeypatch.setenv("MODELSERVE_DATA_DIR", str(tmp_path))
    with serve("digits") as client:
        outputs = predict_all(client, images(x_test))

    assert not marker.exists()
    # The unusable file was replaced by a freshly trained, loadable state dict.
    assert (np.array([o["digit"] for o in outputs]) == y_test).mean() > 0.9
    assert set(torch.load(path, weights_only=True)) == set(digits.DigitsNet().state_dict())


RAW = "/v1/models/digits-raw/predict"
OCTETS = {"content-type": "application/octet-stream"}


def test_raw_image_bodies_give_the_same_answers_as_json(
    digits: ModuleType, client: TestClient
) -> None:
    _, x_test, _, y_test = digits.split()
    as_json = predict_all(client, images(x_test[:40]))
    correct = 0
    for row, expected, label in zip(x_test[:40], as_json, y_test[:40], strict=True):
        body = np.asarray(row, dtype=np.uint8).tobytes()  # 64 bytes, one per pixel
        response = client.post(RAW, content=body, headers=OCTETS)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["digit"] == expected["digit"]
        assert answer["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-5)
        correct += answer["digit"] == label
    assert correct >= 36


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param(bytes(63), 422, "invalid_input", id="63-bytes"),
        pytest.param(bytes(65), 422, "invalid_input", id="65-bytes"),
        pytest.param(b"", 422, "invalid_input", id="empty"),
        pytest.param(bytes(63) + b"\x11", 422, "bad_pixel", id="pixel-17"),
    ],
)
def test_malformed_raw_images_are_rejected(
    client: TestClient, body: bytes, status: int, code: str
) -> None:
    response = client.post(RAW, content=body, headers=OCTETS)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_the_json_digits_service_refuses_raw_bodies(client: TestClient) -> None:
    response = client.post(PREDICT, content=bytes(64), headers=OCTETS)
    assert response.status_code == 415
    assert "takes JSON" in response.json()["error"]["message"]
