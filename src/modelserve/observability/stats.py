"""Analytics over the prediction log: throughput, latency, error rates and input/output drift.

`prediction_stats` reads one model's rows of a window and of a reference window (by default
the window just before it) and computes, with NumPy:

* per version: estimated requests and throughput (each sampled row counts 1/sample_rate),
  latency p50/p90/p99, the share of non-2xx and of 5xx answers;
* drift, per numeric leaf field of the inputs and outputs (`input.x[2]`, `output.score`):
  mean and standard deviation in both windows, the mean shift in reference standard
  deviations, and the population stability index (PSI) over the reference's deciles
  (< 0.1 none, < 0.25 moderate, otherwise major).

`/predict/batch` bodies are unwrapped (`{"inputs": [...]}`, `{"outputs": [...]}`), so every
item counts once. Numbers come from the sampled rows only; rows are capped per window.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from modelserve.db.repos.predictions import LoggedPrediction, list_predictions
from modelserve.errors import InvalidInputError
from modelserve.schemas.stats import (
    DriftLevel,
    DriftPublic,
    FieldDriftPublic,
    LatencyPublic,
    PredictionStatsPublic,
    VersionStatsPublic,
)

if TYPE_CHECKING:
    from modelserve.db.engine import Database

_WINDOW = re.compile(r"^([1-9][0-9]{0,5})([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_WINDOW = dt.timedelta(minutes=1)
MAX_WINDOW = dt.timedelta(days=30)
MAX_ROWS = 20_000  # per window: bounds memory and time of one stats call
MAX_FIELDS = 64
MAX_LIST_ITEMS = 32
MIN_DRIFT_SAMPLES = 10
PSI_MODERATE = 0.1
PSI_MAJOR = 0.25
_EPSILON = 1e-4


def parse_window(text: str) -> dt.timedelta:
    """'90s', '15m', '1h', '7d' -> timedelta; InvalidInputError (422) otherwise."""
    match = _WINDOW.match(text.strip())
    if match is None:
        raise InvalidInputError(
            "window must be a number and a unit (s, m, h, d), e.g. 15m or 1h",
            details={"window": text[:32]},
        )
    window = dt.timedelta(seconds=int(match.group(1)) * _UNIT_S[match.group(2)])
    if not MIN_WINDOW <= window <= MAX_WINDOW:
        raise InvalidInputError("window must be between 1m and 30d", details={"window": text[:32]})
    return window


# -- traffic ---------------------------------------------------------------------------------


def version_stats(rows: Sequence[LoggedPrediction], window_s: float) -> list[VersionStatsPublic]:
    """Per-version traffic figures, versions in order of first appearance."""
    by_version: dict[str, list[LoggedPrediction]] = {}
    for row in rows:
        by_version.setdefault(row.version, []).append(row)
    result = []
    for version, group in by_version.items():
        weights = np.array([1.0 / r.sample_rate if r.sample_rate > 0 else 1.0 for r in group])
        status = np.array([r.status for r in group])
        latency = np.array([r.latency_ms for r in group], dtype=float)
        total = float(weights.sum())
        p50, p90, p99 = (float(v) for v in np.percentile(latency, [50, 90, 99]))
        failed = (status < 200) | (status >= 300)
        result.append(
            VersionStatsPublic(
                version=version,
                requests=round(total, 3),
                sampled=len(group),
                throughput_rps=total / window_s,
                latency=LatencyPublic(p50_ms=p50, p90_ms=p90, p99_ms=p99),
                error_rate=float(weights[failed].sum() / total),
                server_error_rate=float(weights[status >= 500].sum() / total),
                cache_hit_rate=_hit_rate(group, weights),
            )
        )
    return result


def _hit_rate(group: Sequence[LoggedPrediction], weights: np.ndarray) -> float | None:
    """The share of a cached model's answered rows that came from the prediction cache;
    None when no row went through the cache (an uncached model, or rows older than it)."""
    through = np.array([r.cached is not None for r in group])
    if not through.any():
        return None
    hits = np.array([r.cached == "hit" for r in group])
    return float(weights[hits].sum() / weights[through].sum())


# -- drift ----------------------------------------------------------------------------------


def _items(document: Any, wrapper: str) -> list[Any]:
    # /predict/batch bodies hold their items in one list under a fixed key.
    if (
        isinstance(document, dict)
        and isinstance(document.get(wrapper), list)
        and set(document) <= {wrapper, "errors"}
    ):
        return list(document[wrapper])
    return [document]


def _leaves(value: Any, path: str, out: dict[str, list[float]], budget: list[bool]) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number):
            return
        values = out.get(path)
        if values is None:
            if len(out) >= MAX_FIELDS:
                budget[0] = True
                return
            values = out[path] = []
        values.append(number)
    elif isinstance(value, dict):
        for key, item in value.items():
            _leaves(item, f"{path}.{key}", out, budget)
    elif isinstance(value, list):
        if len(value) > MAX_LIST_ITEMS:
            budget[0] = True
        for index, item in enumerate(value[:MAX_LIST_ITEMS]):
            _leaves(item, f"{path}[{index}]", out, budget)


def numeric_fields(rows: Iterable[LoggedPrediction]) -> tuple[dict[str, list[float]], bool]:
    """Every numeric leaf of the answered rows' inputs and outputs; True if some were cut."""
    fields: dict[str, list[float]] = {}
    truncated = [False]
    for row in rows:
        if not 200 <= row.status < 300:
            continue
        for text, side, wrapper in (
            (row.input_json, "input", "inputs"),
            (row.output_json, "output", "outputs"),
        ):
            if text is None:
                continue
            try:
                document = orjson.loads(text)
            except orjson.JSONDecodeError:
                continue
            for item in _items(document, wrapper):
                _leaves(item, side, fields, truncated)
    return fields, truncated[0]


def psi(reference: np.ndarray[Any, Any], current: np.ndarray[Any, Any]) -> float:
    """Population stability index of `current` against the deciles of `reference`.

    Bins are the reference's interior deciles, with values equal to an edge in a bin of their
    own, so a constant reference still detects a moved current.
    """
    edges = np.unique(np.quantile(reference, np.linspace(0.1, 0.9, 9)))

    def shares(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        index = np.searchsorted(edges, values, "left") + np.searchsorted(edges, values, "right")
        counts = np.bincount(index, minlength=2 * len(edges) + 1).astype(float)
        return np.maximum(counts / len(values), _EPSILON)

    ref, cur = shares(reference), shares(current)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def level_of(value: float | None) -> DriftLevel:
    """The drift level of a PSI value."""
    if value is None:
        return "unknown"
    if value < PSI_MODERATE:
        return "none"
    return "moderate" if value < PSI_MAJOR else "major"


def field_drift(name: str, reference: list[float], current: list[float]) -> FieldDriftPublic:
    """Drift figures of one field."""
    ref, cur = np.asarray(reference), np.asarray(current)
    ref_mean = float(ref.mean()) if ref.size else None
    ref_std = float(ref.std()) if ref.size else None
    cur_mean = float(cur.mean()) if cur.size else None
    cur_std = float(cur.std()) if cur.size else None
    shift = None
    if ref_mean is not None and cur_mean is not None and ref_std:
        shift = (cur_mean - ref_mean) / ref_std
    value = None
    if ref.size >= MIN_DRIFT_SAMPLES and cur.size >= MIN_DRIFT_SAMPLES:
        value = psi(ref, cur)
    return FieldDriftPublic(
        field=name,
        reference_count=int(ref.size),
        current_count=int(cur.size),
        reference_mean=ref_mean,
        reference_std=ref_std,
        current_mean=cur_mean,
        current_std=cur_std,
        mean_shift=shift,
        psi=value,
        level=level_of(value),
    )


def drift_summary(
    reference: Sequence[LoggedPrediction],
    current: Sequence[LoggedPrediction],
    *,
    reference_start: dt.datetime,
    reference_end: dt.datetime,
) -> DriftPublic:
    """Drift of every numeric field between the two windows, worst first."""
    ref_fields, ref_cut = numeric_fields(reference)
    cur_fields, cur_cut = numeric_fields(current)
    names = list(dict.fromkeys([*ref_fields, *cur_fields]))
    fields = [field_drift(n, ref_fields.get(n, []), cur_fields.get(n, [])) for n in names]
    fields.sort(key=lambda f: -1.0 if f.psi is None else f.psi, reverse=True)
    scored = [f.psi for f in fields if f.psi is not None]
    worst = max(scored) if scored else None
    return DriftPublic(
        reference_start=reference_start,
        reference_end=reference_end,
        fields=fields,
        max_psi=worst,
        level=level_of(worst),
        truncated=ref_cut or cur_cut,
    )


# -- the whole report ----------------------------------------------------------------------


def summarize(
    *,
    model: str,
    window: str,
    end: dt.datetime,
    span: dt.timedelta,
    current: Sequence[LoggedPrediction],
    reference: Sequence[LoggedPrediction],
    sample_rate: float,
) -> PredictionStatsPublic:
    """The stats report from rows already read (pure: no I/O)."""
    start = end - span
    versions = version_stats(current, span.total_seconds())
    note = None
    if sample_rate <= 0:
        note = "the prediction log is off for this model; set its sample rate to collect data"
    elif len(current) >= MAX_ROWS:
        note = f"only the newest {MAX_ROWS} sampled requests of the window were analysed"
    return PredictionStatsPublic(
        model=model,
        window=window,
        start=start,
        end=end,
        sample_rate=sample_rate,
        requests=round(sum(v.requests for v in versions), 3),
        versions=versions,
        drift=drift_summary(reference, current, reference_start=start - span, reference_end=start),
        note=note,
    )


async def prediction_stats(
    database: Database,
    *,
    model: str,
    window: str,
    sample_rate: float,
    now: dt.datetime | None = None,
) -> PredictionStatsPublic:
    """Read the window and the reference window before it, then summarize off the loop."""
    span = parse_window(window)
    end = now or dt.datetime.now(dt.UTC)
    start = end - span
    async with database.session() as session:
        current = await list_predictions(
            session=session, model=model, since=start, until=end, limit=MAX_ROWS
        )
        reference = await list_predictions(
            session=session, model=model, since=start - span, until=start, limit=MAX_ROWS
        )
    return await asyncio.to_thread(
        summarize,
        model=model,
        window=window,
        end=end,
        span=span,
        current=current,
        reference=reference,
        sample_rate=sample_rate,
    )
