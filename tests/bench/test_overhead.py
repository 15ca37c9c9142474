"""bench.overhead: medians and ratios against the bare configuration."""

from __future__ import annotations

import argparse

from bench.overhead import Config, main, markdown, report


def test_report_takes_medians_and_ratios_against_bare() -> None:
    bare = Config("bare", auth=False, observability=False)
    bare.rps, bare.cpu_us, bare.p99_ms = [100.0, 90.0, 110.0], [10.0, 12.0, 11.0], [1.0, 2.0, 3.0]
    bare.p50_ms = [0.1, 0.2, 0.3]
    full = Config("auth+observability", auth=True, observability=True)
    full.rps, full.cpu_us, full.p99_ms = [95.0, 80.0, 85.0], [12.0, 13.0, 14.0], [2.0, 2.0, 2.0]
    full.p50_ms = [0.5, 0.5, 0.5]
    full.errors = 1
    args = argparse.Namespace(concurrency=64, duration=5.0, rounds=3, ms_env=[], tree=[])
    data = report([bare, full], args)
    rows = {row["config"]: row for row in data["rows"]}
    assert rows["bare"]["rps_vs_bare"] == 1.0
    assert rows["auth+observability"]["rps_median"] == 85.0
    assert rows["auth+observability"]["rps_vs_bare"] == 0.85
    assert rows["auth+observability"]["cpu_vs_bare"] == round(13.0 / 11.0, 3)
    text = markdown(data)
    assert "| auth+observability | 85 | 0.85x | - | 13.0 | 1.18x | 0.500 | 2.0 | 1 |" in text


def test_trees_and_the_ceiling_share_the_rounds_and_ratios() -> None:
    before = Config("auth@before", auth=True, observability=False)
    after = Config("auth@after", auth=True, observability=False)
    ceiling = Config("raw-asgi", auth=False, observability=False, ceiling=True)
    for config, rps in ((before, 80.0), (after, 76.0), (ceiling, 100.0)):
        config.rps, config.cpu_us = [rps, rps], [10.0, 10.0]
        config.p50_ms, config.p99_ms = [0.1, 0.1], [1.0, 1.0]
    args = argparse.Namespace(
        concurrency=64, duration=5.0, rounds=2, ms_env=[], tree=["before=/tmp/b", "after=."]
    )
    data = report([before, after, ceiling], args)
    rows = {row["config"]: row for row in data["rows"]}
    # Ratios against the first modelserve row, and each row against the ceiling.
    assert rows["auth@after"]["rps_vs_bare"] == 0.95
    assert rows["auth@before"]["rps_vs_ceiling"] == 0.8
    assert rows["auth@after"]["rps_vs_ceiling"] == 0.76
    assert data["trees"] == ["before=/tmp/b", "after=."]
    assert "| auth@after | 76 | 0.95x | 0.76x |" in markdown(data)


def test_unknown_configurations_are_refused_before_anything_starts() -> None:
    assert main(["--configs", "bare,nope"]) == 2
    assert main(["--configs", ","]) == 2
