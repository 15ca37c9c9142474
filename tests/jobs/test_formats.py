"""Inputs and results in JSON lines, CSV and Parquet; a file with 1 % malformed rows."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.jobs.conftest import Factory, jsonl
from tests.support.examples import example

__all__ = ["example"]

pytestmark = pytest.mark.services

ROWS = [
    {"x": float(i) / 2, "label": f"item {i}" if i % 4 else 'with "quotes",\nand a newline'}
    for i in range(23)
]


def encode(rows: list[dict[str, Any]], fmt: str) -> bytes:
    if fmt == "jsonl":
        return jsonl(rows)
    if fmt == "csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=["x", "label"], lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
        return text.getvalue().encode()
    sink = io.BytesIO()
    # Small row groups: chunks of 10 rows straddle them.
    pq.write_table(pa.Table.from_pylist(rows), sink, row_group_size=6)
    return sink.getvalue()


def decode(data: bytes, fmt: str) -> list[tuple[int, float, str]]:
    """(row, y, label) of every result."""
    if fmt == "jsonl":
        records = [orjson.loads(line) for line in data.splitlines()]
        return [(r["row"], r["output"]["y"], r["output"]["label"]) for r in records]
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(data.decode()))
        assert reader.fieldnames == ["row", "y", "label"]
        return [(int(r["row"]), float(r["y"]), r["label"]) for r in reader]
    table = pq.read_table(io.BytesIO(data)).to_pylist()
    return [(r["row"], r["y"], r["label"]) for r in table]


EXPECTED = [(i, 2 * r["x"], r["label"]) for i, r in enumerate(ROWS)]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_every_format_in_and_every_format_out(jobs_app: Factory, fmt: str) -> None:
    with jobs_app() as api:
        job = api.run(encode(ROWS, fmt), fmt)
        assert job["state"] == "succeeded", api.errors(job["id"])
        assert job["rows"]["done"] == len(ROWS)
        assert job["output_format"] == fmt
        default = api.client.get(f"/v1/jobs/{job['id']}/results")
        assert default.headers["content-type"].startswith(
            {"jsonl": "application/x-ndjson", "csv": "text/csv", "parquet": "application/vnd"}[fmt]
        )
        assert f"job-{job['id']}.{fmt}" in default.headers["content-disposition"]
        for out in ("jsonl", "csv", "parquet"):
            assert decode(api.results(job["id"], out), out) == EXPECTED, (fmt, out)


def test_output_format_is_chosen_at_submit(jobs_app: Factory) -> None:
    with jobs_app() as api:
        job = api.run(encode(ROWS, "jsonl"), "jsonl", output_format="parquet")
        assert decode(api.results(job["id"]), "parquet") == EXPECTED


def test_csv_cells_take_their_fields_types_and_bad_records_fail_alone(jobs_app: Factory) -> None:
    data = b"x,label\n1.5,a\nabc,b\n2,c,extra\n,d\n3,\n"
    with jobs_app() as api:
        job = api.run(data, "csv")
        assert job["rows"] == {"total": 5, "done": 2, "failed": 3, "remaining": 0}
        assert decode(api.results(job["id"]), "csv") == [(0, 3.0, "a"), (4, 6.0, "")]
        errors = {e["row"]: e for e in api.errors(job["id"])}
        assert sorted(errors) == [1, 2, 3]
        assert errors[1]["code"] == "invalid_input"  # "abc" is not a number
        assert errors[1]["details"][0]["loc"] == ["x"]
        assert "3 fields" in errors[2]["message"]
        assert errors[3]["details"][0]["type"] == "missing"  # an empty cell is no value


def test_one_percent_malformed_rows_are_listed_and_the_rest_succeed(jobs_app: Factory) -> None:
    bad = {
        7: b'{"x": ',
        150: b'{"x": "NaN"}',
        333: b'{"x": NaN}',
        420: b'{"x": 1e9}',
        512: b'{"y": 1}',
        640: b'{"x": -1}',
        777: b"[1, 2]",
        800: b'{"x": 1, "x": 1}',
        901: b'{"x": "\\u0000"}',
        999: b'{"x": true}',
    }
    lines = [bad.get(i, orjson.dumps({"x": i})) for i in range(1000)]
    with jobs_app(chunk_size=100) as api:
        job = api.run(b"\n".join(lines) + b"\n")
        assert job["state"] == "succeeded"
        assert job["rows"] == {"total": 1000, "done": 990, "failed": 10, "remaining": 0}
        errors = api.errors(job["id"])
        assert [e["row"] for e in errors] == sorted(bad)
        assert {e["code"] for e in errors} <= {"invalid_input", "malformed_body", "negative"}
        results = decode(api.results(job["id"]), "jsonl")
        assert [r[0] for r in results] == [i for i in range(1000) if i not in bad]
        assert all(y == 2 * row for row, y, _ in results)


def test_iris_example_over_a_csv_file(jobs_app: Factory, example: Any) -> None:
    iris = example("iris")
    from sklearn.datasets import load_iris

    data = load_iris()
    header = ",".join(iris.FEATURES)
    lines = [header] + [",".join(str(v) for v in row) for row in data.data]
    with jobs_app(services=[iris.Iris]) as api:
        upload = api.upload(("\n".join(lines) + "\n").encode())
        response = api.submit(upload, "csv", model="iris", output_format="jsonl")
        assert response.status_code == 202, response.text
        job = api.wait(response.json()["id"])
        assert job["rows"]["done"] == 150
        outputs = [orjson.loads(line)["output"] for line in api.results(job["id"]).splitlines()]
        names = list(data.target_names)
        correct = sum(
            names.index(o["species"]) == t for o, t in zip(outputs, data.target, strict=True)
        )
        assert correct / 150 > 0.9
        one = api.client.post(
            "/v1/models/iris/predict", json=dict(zip(iris.FEATURES, data.data[0], strict=True))
        )
        # The same answer as a predict request (up to float rounding: batched arithmetic).
        assert one.json()["species"] == outputs[0]["species"]
        for species, probability in one.json()["probabilities"].items():
            assert outputs[0]["probabilities"][species] == pytest.approx(probability, abs=1e-9)
