"""examples/textgen.py: the fables generator streams real text, assembled and streamed alike,
and keeps its trained weights."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest

if TYPE_CHECKING:
    from .conftest import Serve

pytestmark = pytest.mark.slow

PREDICT = "/v1/models/fables/predict"


def streamed(body: bytes) -> list[str]:
    """The chunks of an SSE answer, checking that it ends with `event: done`."""
    events = [e for e in body.decode().split("\n\n") if e]
    assert events[-1] == "event: done\ndata: {}"
    return [orjson.loads(e[len("data: ") :]) for e in events[:-1]]


def test_streams_words_and_predict_assembles_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve: Serve
) -> None:
    monkeypatch.setenv("MODELSERVE_DATA_DIR", str(tmp_path))
    request = {"prompt": "The Fox", "max_tokens": 12, "temperature": 0}
    with serve("textgen") as client:
        whole = client.post(PREDICT, json=request)
        assert whole.status_code == 200, whole.text
        answer = whole.json()
        assert answer["finish_reason"] == "length"
        response = client.post(PREDICT + "?stream=true", json=request)
        assert response.headers["content-type"] == "text/event-stream"
        words = streamed(response.content)
        # One chunk per word, as many as asked, and the same text as the assembled answer.
        assert len(words) == 12
        assert all(w.strip() and " " not in w.strip() for w in words)
        assert "".join(words) == answer["text"]
        # Mostly words of the corpus: the model learned something, not noise.
        corpus = set(
            Path(__file__)
            .resolve()
            .parents[2]
            .joinpath("examples/data/fables.txt")
            .read_text()
            .split()
        )
        assert sum(w.strip() in corpus for w in words) >= 6, words

        stop = words[3].strip()
        cut = client.post(PREDICT, json={**request, "stop": [stop]}).json()
        assert cut == {
            "text": answer["text"][: answer["text"].index(stop)],
            "finish_reason": "stop",
        }

        sampled = client.post(PREDICT, json={**request, "temperature": 1.2, "max_tokens": 5})
        assert sampled.status_code == 200

        for bad in (
            {"prompt": ""},
            {"prompt": "x", "max_tokens": 0},
            {"prompt": "x", "temperature": 3},
        ):
            assert client.post(PREDICT + "?stream=true", json=bad).status_code == 422

    weights = tmp_path / "models" / "fables" / "gru-v1.pt"
    assert weights.is_file()
    written = weights.stat().st_mtime_ns
    with serve("textgen") as client:  # loads the saved weights: same answers, file untouched
        again = client.post(PREDICT, json=request).json()
    assert again == answer
    assert weights.stat().st_mtime_ns == written
