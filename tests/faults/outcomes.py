"""The fault suite's table: one row per scenario, printed at the end of the run.

Each scenario records what it did (load), what was lost, its headline figure and whether it
met its criterion, then asserts the criterion itself: the table is the report, the assertion
is the gate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# `make faults` sets MODELSERVE_FAULTS=full: the loads of the issue and RELIABILITY.md. Unset
# (inside `make test`), every scenario runs at a size that fits CI on 2 cores.
FULL = os.environ.get("MODELSERVE_FAULTS") == "full"
TABLE_ENV = "MODELSERVE_FAULTS_TABLE"


def scaled(full: int, ci: int) -> int:
    """The size of a load: `full` under `make faults`, `ci` otherwise."""
    return full if FULL else ci


@dataclass(frozen=True)
class Outcome:
    """One scenario's row."""

    scenario: str
    load: str
    lost: str
    figure: str
    passed: bool


RESULTS: list[Outcome] = []


def record(scenario: str, *, load: str, lost: str, figure: str, passed: bool) -> None:
    """Add a row to the table (call it before asserting, so a failure still shows)."""
    RESULTS.append(Outcome(scenario, load, lost, figure, passed))


def render() -> str:
    """The table as Markdown."""
    lines = [
        "| scenario | load | lost | figure | result |",
        "|---|---|---|---|---|",
    ]
    for row in RESULTS:
        verdict = "pass" if row.passed else "FAIL"
        lines.append(f"| {row.scenario} | {row.load} | {row.lost} | {row.figure} | {verdict} |")
    return "\n".join(lines)


def write_table() -> Path | None:
    """Write the table where MODELSERVE_FAULTS_TABLE says, if it says."""
    target = os.environ.get(TABLE_ENV)
    if not target or not RESULTS:
        return None
    path = Path(target)
    path.write_text(render() + "\n", encoding="utf-8")
    return path
