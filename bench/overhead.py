"""Feature overhead A/B: W1 through modelserve with auth and observability switched on and off.

Issues 5 and 6 bound what API-key auth and metrics + access log may cost (within 10 % of W1
with them off). One server per configuration is started up front and they are driven in
interleaved rounds (A B C D, A B C D, ...), so drift on a shared machine hits every configuration
alike; each figure is the median over rounds. Two measures per point:

* req/s under wrk at the given concurrency (what the issue asks for), and
* server CPU microseconds per request (psutil over the server process), which is what the
  features add and is steadier than throughput when the machine is busy.

    python -m bench.overhead                  # 4 configurations, 5 rounds of 5 s at c=64
    python -m bench.overhead --rounds 7 -d 8 -c 64 --out bench/results

Before/after a change, in one run: `--tree NAME=PATH` (repeatable) starts every configuration
once per source tree (`PATH/src` first on the server's PYTHONPATH, e.g. a `git worktree` of the
commit before), and `--ceiling` adds the raw ASGI app under the same protocol class to the
rounds, so each row also has its ratio to the ceiling of the same rounds:

    git worktree add /tmp/before <commit>
    python -m bench.overhead --configs auth+observability --tree before=/tmp/before \
        --tree after=. --ceiling -c 64

Writes `<out>/<date>-<host>-overhead.md` and `.json` when `--out` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.auth import provision
from bench.launch import ServerProcess, free_port
from bench.load import run_wrk, wrk_path
from bench.report import unused_stem
from bench.run import server_env, server_env_base
from bench.targets import DEFAULT_HEADERS, JSON_BODIES, ROOT, all_servers

OBS_OFF = {
    "MODELSERVE_OBSERVABILITY__METRICS_ENABLED": "false",
    "MODELSERVE_OBSERVABILITY__ACCESS_LOG": "false",
}
OBS_ON = {
    "MODELSERVE_OBSERVABILITY__METRICS_ENABLED": "true",
    "MODELSERVE_OBSERVABILITY__ACCESS_LOG": "true",
}
AUTH_OFF = {"MODELSERVE_AUTH__ENABLED": "false"}


@dataclass
class Config:
    """One server configuration under test."""

    name: str
    auth: bool
    observability: bool
    # The source tree it runs from (`--tree`); None: this checkout.
    src: Path | None = None
    # The raw ASGI ceiling rather than modelserve (`--ceiling`).
    ceiling: bool = False
    server: ServerProcess | None = None
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    errors: int = 0


CONFIGS = (
    ("bare", False, False),
    ("observability", False, True),
    ("auth", True, False),
    ("auth+observability", True, True),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("-d", "--duration", type=float, default=5.0, help="seconds per point")
    p.add_argument("-c", "--concurrency", type=int, default=64)
    p.add_argument("--out", type=Path, help="write the .md/.json report into this folder")
    p.add_argument(
        "--configs",
        default=",".join(name for name, _, _ in CONFIGS),
        help="comma-separated configurations to run; ratios are against the first"
        " (e.g. observability,auth+observability isolates auth). Fewer servers side by side"
        " share the machine less",
    )
    p.add_argument(
        "--ms-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for every modelserve server",
    )
    p.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="run every configuration from this source tree too (PATH/src first on the"
        " server's PYTHONPATH); repeat for before/after in one run",
    )
    p.add_argument(
        "--ceiling",
        action="store_true",
        help="add the raw ASGI app (bench.servers.raw_asgi) to the rounds as `raw-asgi`",
    )
    return p.parse_args(argv)


def start(
    config: Config, extra: dict[str, str], auth_env: dict[str, str], key: dict[str, str]
) -> None:
    """Start the server of one configuration and wait for its first good answer."""
    if config.ceiling:
        start_ceiling(config)
        return
    base = all_servers()["modelserve"]
    env = dict(extra)
    if config.auth:
        env.update(auth_env)
        config.headers = {**DEFAULT_HEADERS, **key}
    else:
        env.update({**auth_env, **AUTH_OFF})
        config.headers = dict(DEFAULT_HEADERS)
    env.update(OBS_ON if config.observability else OBS_OFF)
    port = free_port()
    config.url = f"http://127.0.0.1:{port}{base.paths['w1']}"
    log = ROOT / "bench" / ".work" / "logs" / f"overhead-{_slug(config.name)}.log"
    environment = server_env(base, env)
    if config.src is not None:
        # Its modelserve ahead of the installed (editable) one: the bench itself stays ours.
        source = str((config.src / "src").resolve())
        environment["PYTHONPATH"] = os.pathsep.join((source, environment["PYTHONPATH"]))
    config.server = ServerProcess(base.command("w1", port), env=environment, cwd=ROOT, log_path=log)
    config.server.wait_ready(config.url, JSON_BODIES["w1"], config.headers, timeout_s=120)


def start_ceiling(config: Config) -> None:
    """Start the raw ASGI echo app (the ceiling of the HTTP stack) for W1."""
    base = all_servers()["raw-asgi"]
    port = free_port()
    config.url = f"http://127.0.0.1:{port}{base.paths['w1']}"
    config.headers = dict(DEFAULT_HEADERS)
    log = ROOT / "bench" / ".work" / "logs" / "overhead-raw-asgi.log"
    config.server = ServerProcess(
        base.command("w1", port), env=server_env(base, {}), cwd=ROOT, log_path=log
    )
    config.server.wait_ready(config.url, JSON_BODIES["w1"], config.headers, timeout_s=120)


def _slug(name: str) -> str:
    return name.replace("+", "-").replace("@", "-at-")


def measure(config: Config, concurrency: int, duration_s: float) -> None:
    """One load point: req/s, p99 and server CPU per request."""
    server = config.server
    assert server is not None
    cpu_before = server.cpu_seconds()
    result = run_wrk(
        config.url,
        JSON_BODIES["w1"],
        config.headers,
        concurrency=concurrency,
        duration_s=duration_s,
    )
    cpu = server.cpu_seconds() - cpu_before
    config.rps.append(result.ok_per_s)
    config.p50_ms.append(result.latency_ms.get("p50", float("nan")))
    config.p99_ms.append(result.latency_ms.get("p99", float("nan")))
    config.cpu_us.append(cpu / max(1, result.requests) * 1e6)
    config.errors += result.non_2xx + sum(result.socket_errors.values())


def report(configs: list[Config], args: argparse.Namespace) -> dict[str, Any]:
    """Medians and ratios against the first configuration (bare when all run), and against
    the ceiling when it ran."""
    served = [config for config in configs if not config.ceiling]
    bare = served[0]
    base_rps = statistics.median(bare.rps)
    base_cpu = statistics.median(bare.cpu_us)
    ceiling = next((config for config in configs if config.ceiling), None)
    ceiling_rps = statistics.median(ceiling.rps) if ceiling is not None else None
    rows = []
    for config in configs:
        rps = statistics.median(config.rps)
        cpu = statistics.median(config.cpu_us)
        rows.append(
            {
                "config": config.name,
                "auth": config.auth,
                "observability": config.observability,
                "rps_median": round(rps, 1),
                "rps_runs": [round(x, 1) for x in config.rps],
                "rps_vs_bare": round(rps / base_rps, 3),
                "cpu_us_per_request_median": round(cpu, 1),
                "cpu_us_runs": [round(x, 1) for x in config.cpu_us],
                "cpu_vs_bare": round(cpu / base_cpu, 3),
                "rps_vs_ceiling": round(rps / ceiling_rps, 3) if ceiling_rps else None,
                "p50_ms_median": round(statistics.median(config.p50_ms), 3),
                "p99_ms_median": round(statistics.median(config.p99_ms), 2),
                "errors": config.errors,
            }
        )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "host": platform.node(),
        "load_average": list(_loadavg()),
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "configs": [config.name for config in configs],
        "trees": args.tree,
        "ms_env": args.ms_env,
        "rows": rows,
    }


def _loadavg() -> tuple[float, ...]:
    try:
        return tuple(round(x, 2) for x in __import__("os").getloadavg())
    except OSError:
        return ()


def markdown(data: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    lines = [
        f"# Feature overhead, W1 c={data['concurrency']} ({data['date']}, {data['host']})",
        "",
        f"`python -m bench.overhead --rounds {data['rounds']} -d {data['duration_s']:g}"
        f" -c {data['concurrency']}` over {', '.join(data['configs'])}; medians of"
        f" interleaved rounds; ratios against the first modelserve row; load average"
        f" {data['load_average']}.",
        "",
        "| configuration | req/s | vs first | vs ceiling | CPU us/request | vs first"
        " | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in data["rows"]:
        ceiling = row["rps_vs_ceiling"]
        lines.append(
            f"| {row['config']} | {row['rps_median']:,.0f} | {row['rps_vs_bare']:.2f}x"
            f" | {f'{ceiling:.2f}x' if ceiling else '-'}"
            f" | {row['cpu_us_per_request_median']:.1f} | {row['cpu_vs_bare']:.2f}x"
            f" | {row['p50_ms_median']:.3f} | {row['p99_ms_median']:.1f} | {row['errors']} |"
        )
    lines.append("")
    lines.append(
        "Runs (req/s): " + "; ".join(f"{r['config']} {r['rps_runs']}" for r in data["rows"])
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the A/B and print (and optionally write) the report."""
    args = parse_args(argv)
    wanted = [name.strip() for name in args.configs.split(",") if name.strip()]
    known = {name: (auth, obs) for name, auth, obs in CONFIGS}
    unknown = [name for name in wanted if name not in known]
    if unknown or not wanted:
        print(f"unknown configuration(s) {unknown}; choose from {list(known)}", file=sys.stderr)
        return 2
    if wrk_path() is None:
        print("wrk is not on PATH (apt-get install wrk)", file=sys.stderr)
        return 2
    extra = dict(item.split("=", 1) for item in args.ms_env)
    trees: list[tuple[str, Path | None]] = [
        (name, Path(path)) for name, _, path in (item.partition("=") for item in args.tree)
    ] or [("", None)]
    auth_env, key = provision(server_env_base())
    configs = [
        Config(f"{name}@{tree}" if tree else name, *known[name], src=src)
        for tree, src in trees
        for name in wanted
    ]
    if args.ceiling:
        configs.append(Config("raw-asgi", auth=False, observability=False, ceiling=True))
    try:
        for config in configs:
            start(config, extra, auth_env, key)
        for config in configs:  # warm-up
            measure(config, args.concurrency, 2)
            config.rps.clear()
            config.cpu_us.clear()
            config.p50_ms.clear()
            config.p99_ms.clear()
            config.errors = 0
        for round_ in range(args.rounds):
            order = configs if round_ % 2 == 0 else list(reversed(configs))
            for config in order:
                measure(config, args.concurrency, args.duration)
    finally:
        for config in configs:
            if config.server is not None:
                config.server.stop()
    data = report(configs, args)
    text = markdown(data)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = f"{time.strftime('%Y-%m-%d')}-{platform.node()}-overhead"
        if len(configs) != len(CONFIGS):
            stem += "-" + "-vs-".join(_slug(c.name) for c in configs)
        stem = unused_stem(args.out, stem)
        (args.out / f"{stem}.md").write_text(text)
        (args.out / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
