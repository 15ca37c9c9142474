"""Shadow traffic: compare a candidate version's answers with the primary's, off the hot path."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

DEFAULT_SHADOW_BUFFER = 1000


@dataclass(frozen=True, slots=True)
class ShadowRecord:
    """One mirrored request: how both versions answered and how far apart they were."""

    at: float
    request_id: str
    primary_version: str
    shadow_version: str
    primary_latency_s: float
    shadow_latency_s: float | None
    equal: bool
    max_abs_diff: float | None
    error: str | None


class ShadowRecorder:
    """Keeps the latest records of one model in a bounded ring (per process)."""

    def __init__(self, size: int = DEFAULT_SHADOW_BUFFER) -> None:
        self._records: deque[ShadowRecord] = deque(maxlen=size)

    def add(self, record: ShadowRecord) -> None:
        """Store one record, dropping the oldest when full."""
        self._records.append(record)

    def latest(self, limit: int = 100) -> list[ShadowRecord]:
        """The newest `limit` records, newest first."""
        items = list(self._records)[-limit:] if limit > 0 else []
        return items[::-1]


def compare(primary: Any, shadow: Any) -> tuple[bool, float | None]:
    """(equal, largest absolute difference between numbers at the same place, if any numbers)."""
    diff = _max_diff(primary, shadow)
    if diff is None:
        return primary == shadow, None
    if math.isnan(diff):
        return False, None
    return primary == shadow, diff


def record(
    *,
    request_id: str,
    primary_version: str,
    shadow_version: str,
    primary_output: Any,
    primary_latency_s: float,
    shadow_output: Any = None,
    shadow_latency_s: float | None = None,
    error: str | None = None,
) -> ShadowRecord:
    """Build a record from both answers (outputs as plain JSON-like values)."""
    if error is not None:
        equal, diff = False, None
    else:
        equal, diff = compare(primary_output, shadow_output)
    return ShadowRecord(
        at=time.time(),
        request_id=request_id,
        primary_version=primary_version,
        shadow_version=shadow_version,
        primary_latency_s=primary_latency_s,
        shadow_latency_s=shadow_latency_s,
        equal=equal,
        max_abs_diff=diff,
        error=error,
    )


def _max_diff(a: Any, b: Any) -> float | None:
    if isinstance(a, bool) or isinstance(b, bool):
        return None
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(float(a) - float(b))
    if isinstance(a, dict) and isinstance(b, dict):
        diffs = [_max_diff(a[k], b[k]) for k in a.keys() & b.keys()]
        found = [d for d in diffs if d is not None]
        return max(found) if found else None
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        diffs = [_max_diff(x, y) for x, y in zip(a, b, strict=False)]
        found = [d for d in diffs if d is not None]
        return max(found) if found else None
    return None
