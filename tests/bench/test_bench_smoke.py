"""The benchmark harness works end to end (`make bench-smoke`); no speed is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import launch, load, report

ROOT = Path(__file__).resolve().parents[2]

RUN_FIELDS = {
    "workload",
    "server",
    "concurrency",
    "driver",
    "duration_s",
    "requests",
    "req_per_s",
    "items_per_s",
    "latency_ms",
    "errors",
    "shed_503",
    "shed_rate",
    "peak_rss_mb",
    "cpu_s_per_req",
}


@pytest.mark.slow
def test_smoke_run_writes_json_and_markdown_with_real_throughput(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(tmp_path), "--no-plot"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    [json_path] = tmp_path.glob("*-smoke.json")
    assert json_path.with_suffix(".md").is_file()
    data = json.loads(json_path.read_text())
    assert data["kind"] == "smoke"
    assert {"machine", "settings", "versions", "ceilings", "servers", "runs", "targets"} <= set(
        data
    )
    assert data["ceilings"]["w1"]["best"]["items_per_s"] > 0
    assert {s: i.get("error") for s, i in data["servers"]["w1"].items()} == {
        "raw-asgi": None,
        "modelserve": None,
    }
    servers = {run["server"] for run in data["runs"]}
    assert servers == {"raw-asgi", "modelserve"}
    for run in data["runs"]:
        assert set(run) >= RUN_FIELDS
        assert run["concurrency"] == 8
        assert run["requests"] > 0
        assert run["req_per_s"] > 0
        assert run["items_per_s"] > 0
        assert run["errors"]["non_2xx"] == 0
        assert {"p50", "p90", "p99"} <= set(run["latency_ms"])
        assert run["latency_ms"]["p50"] <= run["latency_ms"]["p99"]
        assert run["peak_rss_mb"] > 0
        assert run["cpu_s_per_req"] > 0
    modelserve = next(r for r in data["runs"] if r["server"] == "modelserve")
    # The engine's own counters saw the load: every answered request went through a batch.
    assert modelserve["server_stats"]["items"] >= modelserve["ok"]


@pytest.mark.slow
def test_python_driver_counts_answers_and_errors_against_a_real_server(tmp_path: Path) -> None:
    port = launch.free_port()
    server = launch.ServerProcess(
        [sys.executable, "-m", "bench.servers.raw_asgi", "--port", str(port)],
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        log_path=tmp_path / "raw.log",
    )
    try:
        url = f"http://127.0.0.1:{port}/echo"
        server.wait_ready(url, b"{}", {}, timeout_s=60)
        result = load.run_python(url, b'{"x":1}', {}, concurrency=4, duration_s=1.0)
    finally:
        server.stop()
    assert result.requests > 0
    assert result.ok == result.requests
    assert result.shed_503 == 0
    assert sum(result.socket_errors.values()) == 0
    refused = load.run_python(url, b"{}", {}, concurrency=2, duration_s=0.3, timeout_s=0.5)
    assert refused.requests == 0
    assert refused.socket_errors["connect"] > 0


WRK_TEXT = """Running 10s test @ http://127.0.0.1:8000/echo
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms  300.00us   9.80ms   90.00%
  Latency Distribution
     50%    1.95ms
     75%    2.20ms
     90%  800.00us
     99%    1.02s
  60000 requests in 10.00s, 9.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 7
  Non-2xx or 3xx responses: 12
Requests/sec:   6000.00
"""


def test_wrk_text_is_parsed_with_units_and_errors() -> None:
    result = load.parse_wrk(WRK_TEXT, 64)
    assert result.requests == 60000
    assert result.duration_s == pytest.approx(10.0)
    assert result.latency_ms == pytest.approx({"p50": 1.95, "p90": 0.8, "p99": 1020.0})
    assert result.non_2xx == 12
    assert result.ok == 60000 - 12
    assert result.socket_errors == {"connect": 0, "read": 3, "write": 0, "timeout": 7}


def test_wrk_lua_line_wins_over_text_and_counts_503s() -> None:
    line = (
        'BENCH_JSON {"requests":1000,"duration_us":2000000,"connect":0,"read":0,"write":0,'
        '"timeout":1,"status":40,"shed":30,"non2xx":40,"p50_us":500,"p90_us":900,'
        '"p99_us":4000,"max_us":9000,"mean_us":600.5}'
    )
    result = load.parse_wrk(WRK_TEXT + line + "\n", 8)
    assert result.requests == 1000
    assert result.req_per_s == pytest.approx(500.0)
    assert result.shed_503 == 30
    assert result.non_2xx == 40
    assert result.latency_ms["p99"] == pytest.approx(4.0)


def test_wrk_script_reads_the_body_file_and_escapes_headers(tmp_path: Path) -> None:
    script = load.wrk_script(tmp_path / 'b"ody', {"X-Key": 'a"b'})
    assert "\\34" in script  # the quote is a decimal escape, not a string terminator
    assert 'io.open("' in script
    assert "function response(status" in script


def _run(server: str, workload: str, c: int, rate: float, p99: float) -> dict[str, object]:
    return {
        "workload": workload,
        "server": server,
        "concurrency": c,
        "items_per_s": rate,
        "latency_ms": {"p50": p99 / 4, "p99": p99},
        "peak_rss_mb": 100.0,
        "errors": {"non_2xx": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0},
    }


def test_targets_are_ratios_within_the_run_and_missing_rows_are_not_met() -> None:
    results = {
        "runs": [
            _run("raw-asgi", "w1", 64, 10_000, 10),
            _run("modelserve", "w1", 64, 5_000, 12),
            _run("fastapi", "w1", 64, 2_000, 50),
            _run("modelserve", "w1", 1, 900, 0.8),
        ],
        "ceilings": {},
    }
    targets = {t["id"]: t for t in report.evaluate_targets(results)}
    assert targets["w1-c64-vs-raw-asgi"]["value"] == pytest.approx(0.5)
    assert targets["w1-c64-vs-raw-asgi"]["met"] is False
    assert targets["w1-c64-vs-fastapi"]["value"] == pytest.approx(2.5)
    assert targets["w1-c64-vs-litserve"]["met"] is None
    assert targets["w1-c1-p50"]["met"] is True
    assert targets["w1-growth-throughput"]["value"] == pytest.approx(1.0)
    assert targets["w2-c64-vs-model"]["met"] is None
