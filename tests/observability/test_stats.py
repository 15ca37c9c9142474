"""Prediction-log analytics: traffic per version, latency percentiles, error rates, drift."""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

import numpy as np
import pytest

from modelserve.db.repos.predictions import LoggedPrediction
from modelserve.errors import InvalidInputError
from modelserve.observability import stats
from modelserve.observability.stats import parse_window, psi, summarize

END = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def row(
    x: list[float] | None = None,
    *,
    version: str = "1",
    status: int = 200,
    latency_ms: float = 5.0,
    rate: float = 1.0,
    output: Any = None,
    body: Any = None,
) -> LoggedPrediction:
    document = body if body is not None else ({"x": x} if x is not None else None)
    return LoggedPrediction(
        created_at=END - dt.timedelta(minutes=5),
        version=version,
        status=status,
        latency_ms=latency_ms,
        sample_rate=rate,
        input_json=None if document is None else json.dumps(document),
        output_json=None if output is None else json.dumps(output),
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("1h", 3600), ("7d", 604800)]
)
def test_windows_are_a_number_and_a_unit(text: str, seconds: int) -> None:
    assert parse_window(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "1", "h", "1w", "-1h", "0m", "30s", "31d", "1.5h", "1h "])
def test_bad_windows_are_422(text: str) -> None:
    if text == "1h ":
        assert parse_window(text) == HOUR  # surrounding space is forgiven
        return
    with pytest.raises(InvalidInputError):
        parse_window(text)


def test_traffic_latency_and_errors_per_version() -> None:
    current = [row([1.0], latency_ms=float(ms)) for ms in range(1, 101)]
    current += [row([1.0], status=503, latency_ms=1.0)] * 25
    current += [row([1.0], version="2", rate=0.1, status=422)] * 2
    current += [row([1.0], version="2", rate=0.1)] * 8
    report = summarize(
        model="m", window="1h", end=END, span=HOUR, current=current, reference=[], sample_rate=1.0
    )
    one, two = report.versions
    assert (one.version, one.sampled, one.requests) == ("1", 125, 125)
    assert one.throughput_rps == pytest.approx(125 / 3600)
    assert one.latency.p50_ms == pytest.approx(np.percentile([*range(1, 101), *[1] * 25], 50))
    assert one.error_rate == pytest.approx(0.2) and one.server_error_rate == pytest.approx(0.2)
    # A 10% sample: each row stands for ten requests.
    assert (two.sampled, two.requests) == (10, pytest.approx(100))
    assert two.error_rate == pytest.approx(0.2) and two.server_error_rate == 0
    assert report.requests == pytest.approx(225)


def normal_rows(mean: float, n: int, seed: int) -> list[LoggedPrediction]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        x = [rng.gauss(mean, 1.0), rng.gauss(0.0, 1.0)]
        rows.append(row(x, output={"score": x[0] + x[1], "label": "a", "ok": True}))
    return rows


def test_a_shifted_input_is_major_drift_and_a_stable_one_is_not() -> None:
    reference = normal_rows(0.0, 800, seed=1)
    current = normal_rows(2.0, 800, seed=2)
    report = summarize(
        model="m",
        window="1h",
        end=END,
        span=HOUR,
        current=current,
        reference=reference,
        sample_rate=1.0,
    )
    fields = {f.field: f for f in report.drift.fields}
    assert set(fields) == {"input.x[0]", "input.x[1]", "output.score"}  # strings, bools skipped
    moved, stable = fields["input.x[0]"], fields["input.x[1]"]
    assert moved.level == "major" and moved.mean_shift == pytest.approx(2.0, abs=0.2)
    assert stable.level == "none" and stable.psi is not None and stable.psi < 0.1
    assert report.drift.fields[0].field == "input.x[0]"  # worst first
    assert report.drift.level == "major"
    assert report.drift.reference_end == END - HOUR


def test_a_constant_reference_still_detects_a_move() -> None:
    reference = np.zeros(100)
    assert psi(reference, np.zeros(100)) == pytest.approx(0.0)
    assert psi(reference, np.ones(100)) > 1.0


def test_batch_bodies_count_every_item_and_failed_rows_no_drift() -> None:
    batch = {"inputs": [{"x": [1.0]}, {"x": [2.0]}, {"x": [3.0]}]}
    outputs = {"outputs": [{"score": 1.0}, None, {"score": 3.0}], "errors": []}
    rows = [row(body=batch, output=outputs), row([100.0], status=500)]
    fields, truncated = stats.numeric_fields(rows)
    assert fields == {"input.x[0]": [1.0, 2.0, 3.0], "output.score": [1.0, 3.0]}
    assert truncated is False


def test_field_counts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats, "MAX_FIELDS", 3)
    fields, truncated = stats.numeric_fields([row([float(i) for i in range(10)])])
    assert len(fields) == 3 and truncated is True


def test_too_few_samples_is_unknown_not_calm() -> None:
    report = summarize(
        model="m",
        window="1h",
        end=END,
        span=HOUR,
        current=[row([1.0])],
        reference=[row([1.0])],
        sample_rate=1.0,
    )
    (field,) = report.drift.fields
    assert field.psi is None and field.level == "unknown" and report.drift.level == "unknown"


def test_an_off_prediction_log_says_so() -> None:
    report = summarize(
        model="m", window="1h", end=END, span=HOUR, current=[], reference=[], sample_rate=0.0
    )
    assert report.versions == [] and report.note is not None and "off" in report.note
