"""The Open Inference Protocol V2 held to the real, unmodified `tritonclient.http` against a real
`modelserve serve` of the three examples, with API-key auth on as in production.

One server for the module (iris, digits, minilm): JSON and binary tensor data, metadata,
readiness, a pinned version, errors in V2's `{"error": "..."}` shape, and the same answers as
the native route for the same inputs.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.e2e.server import ServerProcess
from tests.protocols.support import EXAMPLES, served_with_keys

pytestmark = pytest.mark.e2e

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
FLOWERS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])
MAX_BODY_BYTES = 65536


@dataclass
class Server:
    process: ServerProcess
    key: str  # predict:* (and nothing else)
    digits_key: str  # predict:digits only
    admin_key: str

    def client(self) -> triton.InferenceServerClient:
        return triton.InferenceServerClient(f"127.0.0.1:{self.process.port}")

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    def http(self) -> httpx.Client:
        return self.process.client(headers=self.auth())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    targets = [EXAMPLES / f"{name}.py" for name in ("iris", "digits", "embeddings")]
    with served_with_keys(
        tmp_path_factory.mktemp("v2"),
        targets,
        ["predict:*", "predict:digits", "admin"],
        extra={"MODELSERVE_HTTP__MAX_BODY_BYTES": str(MAX_BODY_BYTES)},
    ) as (process, keys):
        yield Server(process, *keys)


def iris_inputs(binary: bool, rows: np.ndarray[Any, Any] = FLOWERS) -> list[triton.InferInput]:
    inputs = []
    for index, name in enumerate(FEATURES):
        tensor = triton.InferInput(name, [len(rows)], "FP32")
        tensor.set_data_from_numpy(rows[:, index].astype(np.float32), binary_data=binary)
        inputs.append(tensor)
    return inputs


def native_iris(server: Server) -> list[dict[str, Any]]:
    rows = FLOWERS.astype(np.float32).astype(np.float64)  # what FP32 tensors carry
    body = {"inputs": [dict(zip(FEATURES, row, strict=True)) for row in rows.tolist()]}
    response = server.http().post("/v1/models/iris/predict/batch", json=body)
    assert response.status_code == 200, response.text
    outputs: list[dict[str, Any]] = response.json()["outputs"]
    return outputs


def test_health_and_server_metadata(server: Server) -> None:
    client = server.client()
    # The probes are public, as /livez and /readyz are; the rest needs a credential.
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata(headers=server.auth())
    assert metadata["name"] == "modelserve"
    assert metadata["extensions"] == ["binary_tensor_data"]
    with pytest.raises(InferenceServerException) as info:
        client.get_server_metadata()
    assert info.value.status() == "401"


def test_model_metadata_is_derived_from_the_schemas(server: Server) -> None:
    client = server.client()
    iris = client.get_model_metadata("iris", headers=server.auth())
    assert iris["versions"] == ["1"]
    assert [(t["name"], t["datatype"], t["shape"]) for t in iris["inputs"]] == [
        (name, "FP64", [-1]) for name in FEATURES
    ]
    assert [(t["name"], t["datatype"], t["shape"]) for t in iris["outputs"]] == [
        ("species", "BYTES", [-1]),
        ("class_index", "INT64", [-1]),
        ("probabilities", "FP64", [-1, 3]),
    ]
    digits = client.get_model_metadata("digits", "1", headers=server.auth())
    assert digits["inputs"] == [{"name": "pixels", "datatype": "FP64", "shape": [-1, 8, 8]}]
    minilm = client.get_model_metadata("minilm", headers=server.auth())
    assert minilm["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    # The example declares FP32 (`v2 = tensors(embedding="FP32")`).
    assert minilm["outputs"][0] == {"name": "embedding", "datatype": "FP32", "shape": [-1, -1]}


def test_model_readiness(server: Server) -> None:
    client = server.client()
    headers = server.auth()
    assert client.is_model_ready("iris", headers=headers)
    assert client.is_model_ready("iris", "1", headers=headers)
    assert not client.is_model_ready("iris", "9", headers=headers)
    assert not client.is_model_ready("nope", headers=headers)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_answers_as_the_native_route(server: Server, binary: bool) -> None:
    client = server.client()
    outputs = [
        triton.InferRequestedOutput(n, binary_data=binary)
        for n in ("species", "probabilities", "class_index")
    ]
    result = client.infer(
        "iris", iris_inputs(binary), outputs=outputs, headers=server.auth(), request_id="r-1"
    )
    native = native_iris(server)
    species = [s.decode() if isinstance(s, bytes) else s for s in result.as_numpy("species")]
    assert species == [row["species"] for row in native]
    assert result.as_numpy("class_index").tolist() == [row["class_index"] for row in native]
    expected = [
        [row["probabilities"][s] for s in ("setosa", "versicolor", "virginica")] for row in native
    ]
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-12)
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        "iris",
        "1",
        "r-1",
    )


def test_default_outputs_come_back_as_binary_data(server: Server) -> None:
    # No outputs named: tritonclient asks for all of them as binary data.
    result = server.client().infer("iris", iris_inputs(True), headers=server.auth())
    assert result.as_numpy("species").tolist() == [b"setosa", b"virginica", b"versicolor"]
    assert all("parameters" in o for o in result.get_response()["outputs"])


def test_digits_images_as_one_batch(server: Server) -> None:
    images = np.zeros((4, 8, 8), dtype=np.float32)
    images[:, 1:7, 3:5] = 16.0  # a vertical bar
    images[1] = 0.0
    pixels = triton.InferInput("pixels", list(images.shape), "FP32")
    pixels.set_data_from_numpy(images)
    result = server.client().infer("digits", [pixels], headers=server.auth())
    native = server.http().post(
        "/v1/models/digits/predict/batch",
        json={"inputs": [{"pixels": image} for image in images.tolist()]},
    )
    assert result.as_numpy("digit").tolist() == [o["digit"] for o in native.json()["outputs"]]
    assert result.as_numpy("probabilities").shape == (4, 10)


def test_text_in_bytes_and_embeddings_out_in_fp32(server: Server) -> None:
    texts = ["A man is playing a guitar.", "Héllo wörld"]
    text = triton.InferInput("text", [2], "BYTES")
    text.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
    result = server.client().infer("minilm", [text], headers=server.auth())
    vectors = result.as_numpy("embedding")
    assert vectors.dtype == np.float32 and vectors.shape == (2, 384)
    assert result.as_numpy("dim").tolist() == [384, 384]
    native = server.http().post("/v1/models/minilm/predict", json={"text": texts[1]}).json()
    np.testing.assert_allclose(vectors[1], native["embedding"], atol=1e-6)


def test_a_pinned_version(server: Server) -> None:
    client = server.client()
    result = client.infer("iris", iris_inputs(False), model_version="1", headers=server.auth())
    assert result.get_response()["model_version"] == "1"
    with pytest.raises(InferenceServerException) as info:
        client.infer("iris", iris_inputs(False), model_version="9", headers=server.auth())
    assert info.value.status() == "404"
    assert "no loaded version '9'" in info.value.message()


def test_errors_reach_the_client_in_the_v2_shape(server: Server) -> None:
    client = server.client()
    bad = FLOWERS.copy()
    bad[1, 2] = -1.0
    with pytest.raises(InferenceServerException) as info:
        client.infer("iris", iris_inputs(True, bad), headers=server.auth())
    assert info.value.status() == "422"
    assert "inputs.1.petal_length: Input should be greater than 0" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        client.infer("iris", iris_inputs(False)[:2], headers=server.auth())
    assert info.value.status() == "400"
    assert "missing input(s)" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        client.infer("iris", iris_inputs(False))
    assert info.value.status() == "401"
    # A key for digits only may not use iris.
    with pytest.raises(InferenceServerException) as info:
        client.infer("iris", iris_inputs(False), headers=server.auth(server.digits_key))
    assert info.value.status() == "403"


def infer_raw(server: Server, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return server.http().post("/v2/models/iris/infer", content=body, headers=headers or {})


def binary_body(sizes: list[int], data: bytes) -> tuple[bytes, dict[str, str]]:
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "datatype": "FP32",
                    "shape": [1],
                    "parameters": {"binary_data_size": size},
                }
                for name, size in zip(FEATURES, sizes, strict=True)
            ]
        }
    )
    return head + data, {"Inference-Header-Content-Length": str(len(head))}


def test_inconsistent_binary_data_is_400(server: Server) -> None:
    four = struct.pack("<4f", 5.1, 3.5, 1.4, 0.2)
    body, headers = binary_body([4, 4, 4, 4], four)
    ok = infer_raw(server, body, headers)
    assert ok.status_code == 200, ok.text
    assert ok.headers["x-model-version"] == "1"
    for sizes, data, header in [
        ([4, 4, 4, 8], four, None),  # claims more than the body holds
        ([4, 4, 4, 4], four + b"\0", None),  # bytes nobody claims
        ([4, 4, 4, 2], four[:14], None),  # a size that is not the shape's
        ([4, 4, 4, 4], four, "0"),
        ([4, 4, 4, 4], four, "999999"),
        ([4, 4, 4, 4], four, "12abc"),
    ]:
        body, headers = binary_body(sizes, data)
        if header is not None:
            headers["Inference-Header-Content-Length"] = header
        response = infer_raw(server, body, headers)
        assert response.status_code == 400, (sizes, header, response.text)
        assert list(response.json()) == ["error"]
        assert response.headers["content-type"] == "application/json"


def test_refusals_before_the_model(server: Server) -> None:
    body = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]})
    unauthenticated = server.process.client().post("/v2/models/iris/infer", content=body)
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["www-authenticate"].startswith("Bearer")
    assert list(unauthenticated.json()) == ["error"]
    unknown = server.http().post("/v2/models/nope/infer", content=body)
    assert (unknown.status_code, list(unknown.json())) == (404, ["error"])
    text = infer_raw(server, body, {"Content-Type": "text/plain"})
    assert (text.status_code, list(text.json())) == (415, ["error"])
    large = infer_raw(server, b" " * (MAX_BODY_BYTES + 1))
    assert (large.status_code, list(large.json())) == (413, ["error"])
    for path in ("/v2/models/nope", "/v2/models/iris/versions/9", "/v2/models/nope/ready"):
        missing = server.http().get(path)
        assert (missing.status_code, list(missing.json())) == (404, ["error"]), path
    # The model still answers: nothing above changed anything.
    assert server.client().is_model_ready("iris", headers=server.auth())


def test_metrics_and_access_log_name_route_templates(server: Server) -> None:
    server.client().infer("iris", iris_inputs(True), headers=server.auth())
    metrics = server.process.client(headers=server.auth(server.admin_key)).get("/metrics")
    assert metrics.status_code == 200
    assert 'route="/v2/models/{name}/infer"' in metrics.text
    assert 'route="/v2/models/{name}/versions/{version}/infer"' in metrics.text
    assert "/v2/models/iris/infer" not in metrics.text
    log = server.process.stderr_text()
    assert "route=/v2/models/{name}/infer status=200" in log
    assert "/v2/models/iris/infer" not in log


def test_a_row_the_model_rejects_fails_the_request_naming_it(server: Server) -> None:
    # digits-raw takes the image's 64 bytes (BYTES) and rejects a pixel above 16 (ItemError).
    images = np.zeros((2, 64), dtype=np.uint8)
    images[1, 5] = 200
    image = triton.InferInput("image", [2], "BYTES")
    image.set_data_from_numpy(np.array([row.tobytes() for row in images], dtype=np.object_))
    with pytest.raises(InferenceServerException) as info:
        server.client().infer("digits-raw", [image], headers=server.auth())
    assert info.value.status() == "422"
    assert info.value.message().startswith("row 1: pixel values must be 0..16")
    image = triton.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([images[0].tobytes()], dtype=np.object_))
    result = server.client().infer("digits-raw", [image], headers=server.auth())
    assert result.as_numpy("digit").shape == (1,)
