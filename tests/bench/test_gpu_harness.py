"""The GPU benchmark's harness, wired end to end with tiny models on the CPU (`gpu.sh --tiny`).

The GPU figures come from a lent machine; this keeps the harness that produces them working
between loans (it once broke unseen when production mode began to require a JWT secret).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from bench.gpu import Plan, gpu_targets

ROOT = Path(__file__).resolve().parents[2]


def test_plans_parse_and_refuse_what_they_cannot_run() -> None:
    plan = Plan.parse("modelserve:w2g:workers=8:c=256,1024:replicas=1")
    assert (plan.workers, plan.replicas, plan.concurrency, plan.label) == (
        8,
        1,
        (256, 1024),
        "modelserve x8",
    )
    assert Plan.parse("litserve:w3:workers=2:api=4").label == "litserve 2w/4api"
    for bad in ("litserve:w2g-b32", "modelserve:w9", "nginx:w3", "modelserve:w3:threads=2"):
        with pytest.raises(argparse.ArgumentTypeError):
            Plan.parse(bad)


def row(workload: str, server: str, items: float, c: int = 64, p50: float = 1.0) -> dict:  # type: ignore[type-arg]
    return {
        "workload": workload,
        "server": server,
        "concurrency": c,
        "items_per_s": items,
        "latency_ms": {"p50": p50},
    }


def test_targets_are_ratios_within_the_run() -> None:
    results = {
        "ceilings": {"w3": {"at_max_batch": {"items_per_s": 1000.0}}},
        "runs": [
            row("w3", "modelserve x4", 900.0),
            row("w3", "modelserve x4", 200.0, c=1, p50=1.5),
            row("w2g", "modelserve x8", 25_000.0),
            row("w2g", "litserve 2w/4api", 2_000.0),
            row("w2g-b32", "modelserve x8", 40_000.0),
        ],
    }
    got = {t["id"]: (t["value"], t["met"]) for t in gpu_targets(results)}
    assert got == {
        "w3-vs-model": (0.9, True),
        "w3-c1-p50": (1.5, True),
        "w2g-vs-litserve": (12.5, True),
        "w2g-rate": (25_000.0, True),
        "w2g-b32-rate": (40_000.0, False),
    }


@pytest.mark.slow
def test_tiny_run_serves_every_gpu_workload_with_auth(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.gpu",
            "--tiny",
            "--out",
            str(tmp_path),
            "--run",
            "modelserve:w3:c=1",
            "--run",
            "modelserve:w2g:c=2",
            "--run",
            "modelserve:w2g-b32:c=1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    [json_path] = tmp_path.glob("*-gpu-tiny.json")
    data = json.loads(json_path.read_text())
    assert data["settings"]["modelserve_auth"] == "api key"
    assert {w: set(s) for w, s in data["servers"].items()} == {
        "w3": {"modelserve"},
        "w2g": {"modelserve"},
        "w2g-b32": {"modelserve"},
    }
    assert all(not info.get("error") for s in data["servers"].values() for info in s.values())
    for run in data["runs"]:
        assert run["items_per_s"] > 0 and run["errors"]["non_2xx"] == 0
    b32 = next(r for r in data["runs"] if r["workload"] == "w2g-b32")
    assert b32["items_per_s"] == pytest.approx(32 * b32["req_per_s"])
    assert {t["id"] for t in data["targets"]} >= {"w3-c1-p50", "w2g-rate", "w2g-b32-rate"}
