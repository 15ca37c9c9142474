"""Prediction cache A/B (issue 19): W1 at a 100 % hit rate against the raw ASGI app, and W2
(MiniLM) with 90 % repeated inputs against the same server without the cache.

Every server is started up front and driven in interleaved rounds (A B C, C B A, ...), so drift
on a shared machine hits every row alike; each figure is the median over rounds, and every ratio
is between rows of the same run.

* W1: `raw-asgi` (the ceiling: the echo app under the same protocol class), modelserve's W1
  service without the cache, and `CachedTinyService` (`bench/servers/cached_app.py`), with
  production settings (API-key auth, metrics, access log) and without. wrk posts one body, so
  after the first request every answer is a hit.
* W2: `MiniLMService` and `CachedMiniLMService` with production settings; wrk picks each
  request's sentence: 90 % (`--repeat`) from a pool of `--pool` sentences, the rest never seen
  before (a per-run nonce and a counter). The hit rate is counted from the `x-cache` headers.

    python -m bench.cache                       # both workloads, 5 rounds of 5 s, c=64
    python -m bench.cache --workloads w2 --rounds 3 -d 10 --out bench/results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.auth import provision
from bench.launch import ServerProcess, free_port
from bench.load import LoadResult, parse_wrk, run_wrk, wrk_path
from bench.models import W2_SENTENCE
from bench.report import unused_stem
from bench.run import server_env, server_env_base
from bench.targets import DEFAULT_HEADERS, JSON_BODIES, ROOT, all_servers, project_python

CACHED_APP = ROOT / "bench" / "servers" / "cached_app.py"
PLAIN_APP = ROOT / "bench" / "servers" / "modelserve_app.py"
OBS_OFF = {
    "MODELSERVE_OBSERVABILITY__METRICS_ENABLED": "false",
    "MODELSERVE_OBSERVABILITY__ACCESS_LOG": "false",
    "MODELSERVE_AUTH__ENABLED": "false",
}


@dataclass
class Row:
    """One server under test and what its rounds measured."""

    name: str
    workload: str
    target: str | None  # `modelserve serve` target; None: the raw ASGI ceiling
    production: bool = True
    server: ServerProcess | None = None
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    rps: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    hit_rate: list[float] = field(default_factory=list)
    errors: int = 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.cache", description=__doc__)
    p.add_argument("--workloads", default="w1,w2")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("-d", "--duration", type=float, default=5.0, help="seconds per point")
    p.add_argument("-c", "--concurrency", type=int, default=64)
    p.add_argument("--repeat", type=float, default=0.9, help="W2: share of repeated inputs")
    p.add_argument("--pool", type=int, default=64, help="W2: distinct repeated sentences")
    p.add_argument("--out", type=Path, help="write the .md/.json report into this folder")
    return p.parse_args(argv)


def rows_for(workloads: list[str]) -> list[Row]:
    """The servers of the chosen workloads."""
    rows: list[Row] = []
    if "w1" in workloads:
        rows += [
            Row("raw-asgi", "w1", None, production=False),
            Row("w1 no cache", "w1", f"{PLAIN_APP}:TinyService"),
            Row("w1 cache, 100 % hits", "w1", f"{CACHED_APP}:CachedTinyService"),
            Row("w1 cache, 100 % hits, bare", "w1", f"{CACHED_APP}:CachedTinyService", False),
        ]
    if "w2" in workloads:
        rows += [
            Row("w2 no cache", "w2", f"{PLAIN_APP}:MiniLMService"),
            Row("w2 cache", "w2", f"{CACHED_APP}:CachedMiniLMService"),
        ]
    return rows


def start(row: Row, auth_env: dict[str, str], key: dict[str, str]) -> None:
    """Start one row's server and wait for its first good answer."""
    port = free_port()
    log = ROOT / "bench" / ".work" / "logs" / f"cache-{row.name.replace(' ', '-')}.log"
    if row.target is None:
        base = all_servers()["raw-asgi"]
        row.url = f"http://127.0.0.1:{port}{base.paths['w1']}"
        row.headers = dict(DEFAULT_HEADERS)
        cmd = base.command("w1", port)
        env = server_env(base, {})
    else:
        base = all_servers()["modelserve"]
        model = "tiny" if row.workload == "w1" else "minilm"
        row.url = f"http://127.0.0.1:{port}/v1/models/{model}/predict"
        if row.production:
            row.headers = {**DEFAULT_HEADERS, **key}
            env = server_env(base, auth_env)
        else:
            row.headers = dict(DEFAULT_HEADERS)
            env = server_env(base, {**auth_env, **OBS_OFF})
        cmd = [project_python(), "-m", "modelserve", "serve", row.target, "--port", str(port)]
        cmd += ["--log-level", "warning"]
    row.server = ServerProcess(cmd, env=env, cwd=ROOT, log_path=log)
    row.server.wait_ready(row.url, JSON_BODIES[row.workload], row.headers, timeout_s=300)


# W2's requests: `request()` picks the body; `response()` counts hits from the x-cache header.
_MIXED_LUA = """
wrk.method = "POST"
%(headers)s
local sentence = %(sentence)s
local repeat_share = %(repeat)f
local pool_size = %(pool)d
local nonce = %(nonce)s
local counter = 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) shed = 0; non2xx = 0; hits = 0; answered = 0; math.randomseed(%(seed)d) end
function request()
  counter = counter + 1
  local text
  if math.random() < repeat_share then
    text = sentence .. " #" .. math.random(pool_size)
  else
    text = sentence .. " " .. nonce .. " " .. counter
  end
  return wrk.format(nil, nil, nil, '{"text":"' .. text .. '"}')
end
function response(status, headers, body)
  if status == 503 then shed = shed + 1 end
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
  answered = answered + 1
  if headers["x-cache"] == "hit" or headers["X-Cache"] == "hit" then hits = hits + 1 end
end
function done(summary, latency, requests)
  local s, n, h, a = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    s = s + t:get("shed"); n = n + t:get("non2xx"); h = h + t:get("hits")
    a = a + t:get("answered")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"timeout":%%d,"status":%%d,"shed":%%d,"non2xx":%%d,"p50_us":%%d,"p90_us":%%d,' ..
    '"p99_us":%%d,"max_us":%%d,"mean_us":%%.1f,"hits":%%d,"answered":%%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
    s, n, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, h, a))
end
"""


def _lua(text: str) -> str:
    return '"' + "".join(f"\\{b}" for b in text.encode()) + '"'


def run_mixed(row: Row, args: argparse.Namespace, duration_s: float) -> tuple[LoadResult, float]:
    """wrk with W2's mixed bodies; the result and the share of hits."""
    exe = wrk_path()
    assert exe is not None
    headers = "\n".join(f"wrk.headers[{_lua(k)}] = {_lua(v)}" for k, v in row.headers.items())
    script = _MIXED_LUA % {
        "headers": headers,
        "sentence": _lua(W2_SENTENCE),
        "repeat": args.repeat,
        "pool": args.pool,
        "nonce": _lua(secrets.token_hex(6)),
        "seed": secrets.randbelow(2**31),
    }
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        path = Path(tmp) / "mixed.lua"
        path.write_text(script)
        cmd = [exe, "-t1", f"-c{args.concurrency}", f"-d{max(1, round(duration_s))}s"]
        cmd += ["--timeout=10s", "--latency", "-s", str(path), row.url]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration_s + 60, check=False
        )
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("BENCH_JSON "))
    counts = json.loads(line[len("BENCH_JSON ") :])
    hit_rate = counts["hits"] / max(1, counts["answered"])
    return parse_wrk(proc.stdout, args.concurrency), hit_rate


def measure(row: Row, args: argparse.Namespace, duration_s: float) -> None:
    """One load point of one row."""
    server = row.server
    assert server is not None
    cpu_before = server.cpu_seconds()
    if row.workload == "w2":
        result, hit_rate = run_mixed(row, args, duration_s)
        row.hit_rate.append(hit_rate)
    else:
        result = run_wrk(
            row.url,
            JSON_BODIES["w1"],
            row.headers,
            concurrency=args.concurrency,
            duration_s=duration_s,
        )
    row.cpu_us.append((server.cpu_seconds() - cpu_before) / max(1, result.requests) * 1e6)
    row.rps.append(result.ok_per_s)
    row.p99_ms.append(result.latency_ms.get("p99", float("nan")))
    row.errors += result.non_2xx + sum(result.socket_errors.values())


def report(rows: list[Row], args: argparse.Namespace) -> dict[str, Any]:
    """Medians, and each row's ratio to its workload's baseline of the same rounds: the raw
    ASGI app for W1, the server without the cache for W2."""
    medians = {row.name: statistics.median(row.rps) for row in rows}
    baselines = {"w1": "raw-asgi", "w2": "w2 no cache"}
    data_rows = []
    for row in rows:
        base = medians.get(baselines[row.workload])
        data_rows.append(
            {
                "row": row.name,
                "workload": row.workload,
                "production": row.production and row.target is not None,
                "rps_median": round(medians[row.name], 1),
                "rps_runs": [round(x, 1) for x in row.rps],
                "vs_baseline": round(medians[row.name] / base, 3) if base else None,
                "baseline": baselines[row.workload],
                "p99_ms_median": round(statistics.median(row.p99_ms), 2),
                "cpu_us_per_request_median": round(statistics.median(row.cpu_us), 1),
                "hit_rate": round(statistics.median(row.hit_rate), 3) if row.hit_rate else None,
                "errors": row.errors,
            }
        )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "host": platform.node(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "repeat": args.repeat,
        "pool": args.pool,
        "rows": data_rows,
    }


def markdown(data: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    lines = [
        f"# Prediction cache, c={data['concurrency']} ({data['date']}, {data['host']})",
        "",
        f"`python -m bench.cache --rounds {data['rounds']} -d {data['duration_s']:g}"
        f" -c {data['concurrency']}`; medians of interleaved rounds; W2 repeats"
        f" {data['repeat']:.0%} of its inputs from a pool of {data['pool']}; load average"
        f" {data['load_average']}.",
        "",
        "| row | req/s | vs baseline (same run) | hit rate | server CPU us/request | p99 ms"
        " | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in data["rows"]:
        ratio = row["vs_baseline"]
        hits = row["hit_rate"]
        versus = f"{ratio:.2f}x ({row['baseline']})" if ratio else "-"
        lines.append(
            f"| {row['row']} | {row['rps_median']:,.0f} | {versus}"
            f" | {f'{hits:.0%}' if hits is not None else '-'}"
            f" | {row['cpu_us_per_request_median']:.1f} | {row['p99_ms_median']:.1f}"
            f" | {row['errors']} |"
        )
    lines.append("")
    lines.append("Runs (req/s): " + "; ".join(f"{r['row']} {r['rps_runs']}" for r in data["rows"]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the A/B and print (and optionally write) the report."""
    args = parse_args(argv)
    if wrk_path() is None:
        print("wrk is not on PATH (apt-get install wrk)", file=sys.stderr)
        return 2
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    rows = rows_for(workloads)
    if not rows:
        print("choose --workloads from w1, w2", file=sys.stderr)
        return 2
    auth_env, key = provision(server_env_base())
    try:
        for row in rows:
            start(row, auth_env, key)
        for row in rows:  # warm-up: W2's pool gets cached here, as in a warm server
            measure(row, args, 3)
            row.rps.clear()
            row.p99_ms.clear()
            row.cpu_us.clear()
            row.hit_rate.clear()
            row.errors = 0
        for round_ in range(args.rounds):
            for row in rows if round_ % 2 == 0 else list(reversed(rows)):
                measure(row, args, args.duration)
    finally:
        for row in rows:
            if row.server is not None:
                row.server.stop()
    data = report(rows, args)
    text = markdown(data)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = unused_stem(args.out, f"{time.strftime('%Y-%m-%d')}-{platform.node()}-cache")
        (args.out / f"{stem}.md").write_text(text)
        (args.out / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
