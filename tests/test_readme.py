"""The README's examples run: each curl call answers as shown; "Serve your own model" serves."""

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
                    check_shown_prefix(shown, "embedding", answer["embedding"])
                json.dumps(answer)


def shown_numbers(shown: str, key: str) -> list[str]:
    """The numbers the README shows at the start of the list `"key":[a,b,...]`, as written."""
    match = re.search(rf'"{key}":\[(?P<values>[^\]]*)\]', shown)
    assert match, (key, shown)
    values = [v.strip() for v in match["values"].split(",")]
    return [v for v in values if v != "..."]


def check_shown_prefix(shown: str, key: str, actual: list[float]) -> None:
    """Each number shown equals the real one rounded to as many decimals as the README prints."""
    numbers = shown_numbers(shown, key)
    assert numbers, (key, shown)
    for index, text in enumerate(numbers):
        decimals = len(text.partition(".")[2])
        # Half a unit in the last printed place, plus slack for binary floating point.
        tolerance = 0.5 * 10**-decimals + 1e-12
        assert abs(actual[index] - float(text)) <= tolerance, (key, index, text, actual[index])


def test_shown_prefix_check_can_fail() -> None:
    # The check above is what keeps the README's MiniLM vector honest: a vector from another
    # sentence, or wrongly rounded, must fail it.
    check_shown_prefix('{"v":[0.0217,-0.0049,...]}', "v", [0.02166407, -0.00486413])
    with pytest.raises(AssertionError):
        check_shown_prefix('{"v":[-0.1224,-0.0469,...]}', "v", [0.02166407, -0.00486413])
    with pytest.raises(AssertionError):
        check_shown_prefix('{"v":[0.0216,...]}', "v", [0.02166407])


SNIPPET = re.compile(r"```python\n(?P<code># my_model\.py[^\n]*\n.*?)```", re.DOTALL)


def test_readme_own_model_snippet_serves(tmp_path: Path) -> None:
    # The snippet is the first code a new user copies: it must run as printed, with no
    # placeholder to fill in, and the command shown after it must name the same file.
    text = README.read_text()
    match = SNIPPET.search(text)
    assert match, "the README lost its 'Serve your own model' snippet"
    assert "modelserve serve my_model.py" in text[match.end() :]
    module = tmp_path / "my_model.py"
    module.write_text(match["code"])
    specs = load_target(str(module))
    assert [s.name for s in specs] == ["my-iris"]
    flowers = [
        (
            {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
            "setosa",
        ),
        (
            {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3},
            "virginica",
        ),
    ]
    with serving(specs) as client:
        for flower, species in flowers:
            response = client.post("/v1/models/my-iris/predict", json=flower)
            assert response.status_code == 200, response.text
            assert response.json() == {"species": species}
        batch = client.post(
            "/v1/models/my-iris/predict/batch", json={"inputs": [f for f, _ in flowers]}
        )
        assert batch.status_code == 200, batch.text
