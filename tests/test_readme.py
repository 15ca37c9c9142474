"""Every curl example in the README runs against the real example models and answers as shown."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from modelserve import load_target
from tests.support.client import serving
from tests.support.examples import example_path, wait_ready

README = Path(__file__).resolve().parents[1] / "README.md"
CURL = re.compile(
    r"curl -s localhost:8000(?P<path>/v1/models/[\w.-]+/predict(?:/batch)?)"
    r"(?:(?!curl ).)*?-d '(?P<body>[^']*)'"
    r"\n(?:# (?P<shown>[^\n]*))?",
    re.DOTALL,
)


def readme_calls() -> list[tuple[str, str, str | None]]:
    calls = [(m["path"], m["body"], m["shown"]) for m in CURL.finditer(README.read_text())]
    assert len(calls) >= 4, "the README lost its curl examples"
    return calls


@pytest.mark.slow
def test_readme_curl_examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSERVE_DATA_DIR", str(tmp_path))
    specs = [
        s for name in ("iris", "embeddings", "digits") for s in load_target(example_path(name))
    ]
    with serving(specs, wait=False) as client:
        wait_ready(client)
        for path, body, shown in readme_calls():
            response = client.post(
                path, content=body.encode(), headers={"content-type": "application/json"}
            )
            assert response.status_code == 200, (path, response.text)
            if shown:
                answer = response.json()
                # The README abbreviates numbers; the shape and the labels must match exactly.
                for key in re.findall(r'"(\w+)":', shown):
                    assert f'"{key}"' in response.text, (path, key)
                for label in re.findall(r':"(\w+)"', shown):
                    assert f'"{label}"' in response.text, (path, label)
                if "dim" in answer:
                    assert answer["dim"] == len(answer["embedding"]) == 384
                json.dumps(answer)
