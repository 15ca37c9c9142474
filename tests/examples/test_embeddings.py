"""examples/embeddings.py: all-MiniLM-L6-v2 vectors, semantics and validation, over HTTP and
through the test kit (`modelserve.testing`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelserve.testing import assert_batch_invariant, assert_refuses_invalid_inputs, sample_inputs

if TYPE_CHECKING:
    from .conftest import Kit, Serve

pytestmark = pytest.mark.slow

PREDICT = "/v1/models/minilm/predict"

# (text, paraphrase, unrelated text): the paraphrase must land closer than the unrelated one.
TRIPLES = [
    (
        "A man is playing a guitar.",
        "Someone is strumming an acoustic guitar.",
        "The stock market fell sharply on Monday.",
    ),
    (
        "How do I reset my password?",
        "I forgot my password, how can I change it?",
        "What is the best recipe for banana bread?",
    ),
    (
        "The cat is sleeping on the sofa.",
        "A kitten naps on the couch.",
        "Quantum computers use qubits to store information.",
    ),
    (
        "The train to Berlin was delayed by an hour.",
        "Our Berlin train arrived sixty minutes late.",
        "She planted tomatoes in her garden this spring.",
    ),
    (
        "Interest rates were raised by the central bank.",
        "The central bank increased borrowing costs.",
        "The football team won the championship final.",
    ),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, serve: Serve) -> Iterator[TestClient]:
    """One server for the module: loading the transformer takes several seconds."""
    data_dir: Path = tmp_path_factory.mktemp("minilm-data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELSERVE_DATA_DIR", str(data_dir))
        with serve("embeddings") as client:
            yield client


def embed(client: TestClient, text: str) -> np.ndarray[Any, Any]:
    response = client.post(PREDICT, json={"text": text})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dim"] == len(body["embedding"])
    return np.asarray(body["embedding"])


def embed_all(client: TestClient, texts: list[str]) -> np.ndarray[Any, Any]:
    response = client.post(PREDICT + "/batch", json={"inputs": [{"text": t} for t in texts]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["errors"] == []
    return np.asarray([out["embedding"] for out in body["outputs"]])


def test_vector_has_384_dimensions_and_unit_length(client: TestClient) -> None:
    vector = embed(client, "modelserve turns models into APIs")
    assert vector.shape == (384,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert np.isfinite(vector).all()


def test_paraphrases_score_higher_than_unrelated_texts(client: TestClient) -> None:
    texts = [text for triple in TRIPLES for text in triple]
    vectors = embed_all(client, texts).reshape(len(TRIPLES), 3, 384)
    for (anchor, paraphrase, unrelated), (text, *_) in zip(vectors, TRIPLES, strict=True):
        # Unit vectors: the dot product is the cosine similarity.
        close, far = float(anchor @ paraphrase), float(anchor @ unrelated)
        assert close > far + 0.2, (text, close, far)
        assert close > 0.5, (text, close)


def test_a_batch_answers_as_its_items_alone(tmp_path: Path, kit: Kit) -> None:
    # Texts of very different lengths, so the batch pads them to a common length.
    texts = [
        "Hi",
        "A man is playing a guitar.",
        "Ünïcödé text, emoji 🙂 and 日本語 are fine too.",
        " ".join(["long input"] * 150),
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELSERVE_DATA_DIR", str(tmp_path))
        with kit("embeddings", "minilm") as client:
            inputs = [{"text": text} for text in texts] + sample_inputs(client.spec, 4)
            assert_batch_invariant(client, inputs, abs_tol=1e-5)
            assert_refuses_invalid_inputs(client)
            batch = client.predict_batch([{"text": text} for text in texts]).json()["outputs"]
    # Distinct texts, distinct vectors: the batch is not answering with one item's output.
    assert len({tuple(np.round(out["embedding"], 3)) for out in batch}) == len(texts)


def test_same_text_gives_the_same_vector(client: TestClient) -> None:
    first = embed(client, "repeatable")
    second = embed(client, "repeatable")
    np.testing.assert_allclose(first, second, atol=1e-6)


def test_longest_allowed_text_is_accepted(client: TestClient) -> None:
    vector = embed(client, "x" * 2000)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        pytest.param({"text": ""}, ["text"], id="empty"),
        pytest.param({"text": "x" * 2001}, ["text"], id="too-long"),
        pytest.param({}, ["text"], id="missing"),
        pytest.param({"text": 42}, ["text"], id="number"),
        pytest.param({"text": ["a", "b"]}, ["text"], id="list"),
        pytest.param({"text": None}, ["text"], id="null"),
        pytest.param({"text": "hi", "model": "other"}, ["model"], id="unknown-field"),
        pytest.param({"text": "nul \u0000 byte"}, ["text"], id="nul-character"),
    ],
)
def test_invalid_input_is_rejected_with_422(
    body: dict[str, Any], loc: list[Any], client: TestClient
) -> None:
    response = client.post(PREDICT, json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert loc in [d["loc"] for d in error["details"]], error


def test_model_is_described(client: TestClient) -> None:
    info = client.get("/v1/models/minilm").json()
    assert info["description"].startswith("Embed a text into a 384-dimensional unit vector")
    assert info["batching"]["max_batch_size"] == 64
    assert info["batching"]["max_wait_ms"] == 5
    assert info["input_schema"]["properties"]["text"]["maxLength"] == 2000
