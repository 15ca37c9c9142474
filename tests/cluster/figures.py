"""The cluster rehearsal's table: one row per scenario with its figure, printed at the end.

Each scenario records what it did, what it measured and its criterion, then asserts the
criterion: the table is the report (docs/deploy.md copies it), the assertion is the gate.
MODELSERVE_CLUSTER_TABLE=<file> also writes the table there as Markdown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# `make cluster` sets MODELSERVE_CLUSTER=full: every scenario. Unset (inside `make test`), only
# the bounded subset marked as such runs.
FULL = os.environ.get("MODELSERVE_CLUSTER") == "full"
TABLE_ENV = "MODELSERVE_CLUSTER_TABLE"


@dataclass(frozen=True)
class Row:
    scenario: str
    load: str
    figure: str
    criterion: str
    passed: bool


ROWS: list[Row] = []


def record(scenario: str, *, load: str, figure: str, criterion: str, passed: bool) -> None:
    """Add a row (before asserting, so that a failure is in the table too)."""
    ROWS.append(Row(scenario, load, figure, criterion, passed))


def render() -> str:
    lines = ["| scenario | load | figure | criterion | result |", "|---|---|---|---|---|"]
    for row in ROWS:
        verdict = "pass" if row.passed else "FAIL"
        lines.append(
            f"| {row.scenario} | {row.load} | {row.figure} | {row.criterion} | {verdict} |"
        )
    return "\n".join(lines)


def write_table() -> Path | None:
    target = os.environ.get(TABLE_ENV)
    if not target or not ROWS:
        return None
    path = Path(target)
    path.write_text(render() + "\n")
    return path
