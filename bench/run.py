"""`python -m bench.run`: the whole side-by-side benchmark in one run on one machine.

For each workload: the model's own ceiling (alone in a loop, batch 1..max), then each server in
turn (started, checked with one real request, warmed up, driven at every concurrency, stopped).
Writes `<out>/<date>-<host>.{json,md,png}`.

    python -m bench.run                         # everything (make bench)
    python -m bench.run --smoke                 # W1, raw ASGI + modelserve, c=8, ~2 s (CI)
    python -m bench.run --workloads w1 --servers modelserve,raw-asgi,fastapi -c 64 -d 10
    python -m bench.run --check-peers           # start each peer, one request per workload, stop
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import load, peers, report
from bench.launch import PeakMemory, ServerFailedError, ServerProcess, free_port
from bench.targets import DEFAULT_HEADERS, ROOT, Server, all_servers, modelserve_w2

DEFAULT_SERVERS = ("raw-asgi", "modelserve", "fastapi", "litserve", "bentoml")
DEFAULT_CONCURRENCY = (1, 8, 64, 256, 1024)
SMOKE = {"workloads": ["w1"], "servers": ["raw-asgi", "modelserve"], "concurrency": [8]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line; --smoke sets small defaults that explicit flags still override."""
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--smoke", action="store_true", help="seconds-long end-to-end check (CI)")
    p.add_argument("--workloads", help="comma list of w1,w2 (default: both; smoke: w1)")
    p.add_argument("--servers", help=f"comma list of {','.join(DEFAULT_SERVERS)}")
    p.add_argument("-c", "--concurrency", help="comma list (default 1,8,64,256,1024; smoke 8)")
    p.add_argument("-d", "--duration", type=float, help="seconds per point (default 10; smoke 2)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per server (default 3; smoke 1)")
    p.add_argument(
        "--driver",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="auto: wrk when on PATH, else the pure-Python driver",
    )
    p.add_argument(
        "--threads", type=int, default=1, help="wrk threads (-t); python driver processes"
    )
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")
    p.add_argument(
        "--out", type=Path, help="results folder (default bench/results; smoke: a temp dir)"
    )
    p.add_argument(
        "--ceiling-seconds", type=float, help="seconds per batch size (default 2; smoke 0.2)"
    )
    p.add_argument("--max-batch", type=int, default=128, help="largest batch of the model ceiling")
    p.add_argument("--skip-ceiling", action="store_true")
    p.add_argument("--startup-timeout", type=float, default=300.0)
    p.add_argument(
        "--no-auth",
        action="store_true",
        help="serve modelserve without API-key auth (default: production mode with a key)",
    )
    p.add_argument(
        "--ms-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the modelserve server (metrics/auth switches)",
    )
    p.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="extra request header for every server (an API key, say)",
    )
    p.add_argument("--no-plot", action="store_true")
    p.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="SERVER",
        help="record a py-spy flame graph of SERVER at each concurrency into --out",
    )
    p.add_argument(
        "--check-peers",
        action="store_true",
        help="only start every selected server, send one request per workload, stop",
    )
    args = p.parse_args(argv)
    smoke = args.smoke
    args.workloads = _csv(args.workloads) or (SMOKE["workloads"] if smoke else ["w1", "w2"])
    args.servers = _csv(args.servers) or (SMOKE["servers"] if smoke else list(DEFAULT_SERVERS))
    conc = _csv(args.concurrency)
    args.concurrency = (
        [int(c) for c in conc]
        if conc
        else (SMOKE["concurrency"] if smoke else list(DEFAULT_CONCURRENCY))
    )
    args.duration = args.duration if args.duration is not None else (2.0 if smoke else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if smoke else 3.0)
    args.ceiling_seconds = (
        args.ceiling_seconds if args.ceiling_seconds is not None else (0.2 if smoke else 2.0)
    )
    if smoke:
        args.max_batch = min(args.max_batch, 64)
    if args.out is None:
        args.out = (
            Path(tempfile.mkdtemp(prefix="bench-smoke-")) if smoke else ROOT / "bench" / "results"
        )
    unknown = set(args.servers) - set(DEFAULT_SERVERS)
    if unknown:
        p.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    return args


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _pairs(items: list[str], sep: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, found, value = item.partition(sep)
        if not found:
            raise SystemExit(f"expected NAME{sep}VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def raise_fd_limit() -> None:
    """c=1024 needs more than the usual 1024 open files in wrk and the servers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": psutil.virtual_memory().total / 2**30,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
    }


def versions(servers: list[str]) -> dict[str, str | None]:
    """Version of the package behind each server."""
    out: dict[str, str | None] = {}
    for name, server in all_servers().items():
        if name not in servers or server.version_of is None:
            continue
        if server.peer is not None:
            out[name] = peers.installed_version(server.peer, server.version_of)
        else:
            try:
                out[name] = version(server.version_of)
            except PackageNotFoundError:
                out[name] = None
    return out


def server_env_base() -> dict[str, str]:
    """The environment the CLI runs with when provisioning (the caller's, repo importable)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), os.environ.get("PYTHONPATH")) if x)
    return env


def server_env(server: Server, extra: dict[str, str]) -> dict[str, str]:
    """Environment of a server process: offline model loading, the repo importable."""
    env = dict(os.environ)
    env.update(
        {
            # The repo first, so servers import `bench`; keep what the caller had (gpu.sh).
            "PYTHONPATH": os.pathsep.join(
                x for x in (str(ROOT), os.environ.get("PYTHONPATH")) if x
            ),
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "BENTOML_DO_NOT_TRACK": "true",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    env.update(server.env)
    if server.name == "modelserve":
        env.update(extra)
    return env


def model_ceiling(workload: str, max_batch: int, seconds: float) -> dict[str, Any]:
    """Run bench.ceiling in its own process and read its JSON."""
    cmd = [
        sys.executable,
        "-m",
        "bench.ceiling",
        "--workload",
        workload,
        "--max-batch",
        str(max_batch),
        "--seconds",
        str(seconds),
    ]
    env = server_env(all_servers()["fastapi"], {})
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=ROOT, env=env, check=False, timeout=900
    )
    if proc.returncode != 0:
        raise RuntimeError(f"model ceiling for {workload} failed: {proc.stderr[-800:]}")
    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data


def _stats(client: httpx.Client, url: str | None) -> dict[str, Any] | None:
    if url is None:
        return None
    try:
        resp = client.get(url)
        stats: dict[str, Any] = resp.json().get("stats", {})
        return stats
    except (httpx.HTTPError, ValueError):
        return None


def _stats_delta(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    if not before or not after:
        return {}
    batches = after.get("batches", 0) - before.get("batches", 0)
    items = after.get("items", 0) - before.get("items", 0)
    return {
        "batches": batches,
        "items": items,
        "avg_batch": items / batches if batches else None,
        "shed": after.get("shed", 0) - before.get("shed", 0),
    }


def measure_server(
    server: Server,
    workload: str,
    args: argparse.Namespace,
    headers: dict[str, str],
    ms_env: dict[str, str],
    log_dir: Path,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Start one server, drive it at every concurrency, stop it; (server info, rows)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = base + server.paths[workload]
    body = server.bodies[workload]
    cmd = server.command(workload, port)
    info: dict[str, Any] = {"settings": server.settings.get(workload, {}), "command": cmd}
    rows: list[dict[str, Any]] = []
    print(f"[{workload}] {server.name}: starting", flush=True)
    proc = ServerProcess(
        cmd,
        env=server_env(server, ms_env),
        cwd=ROOT,
        log_path=log_dir / f"{workload}-{safe_name(server.name)}.log",
    )
    try:
        ready = proc.wait_ready(url, body, headers, args.startup_timeout)
        info.update(startup_s=ready.startup_s, sample=ready.sample)
        print(
            f"[{workload}] {server.name}: ready in {ready.startup_s:.1f}s: {ready.sample[:80]}",
            flush=True,
        )
        if args.check_peers:
            return info, rows
        if args.warmup > 0:
            load.drive(
                url,
                body,
                headers,
                concurrency=min(8, max(args.concurrency)),
                duration_s=args.warmup,
                driver=args.driver,
                threads=args.threads,
                timeout_s=args.timeout,
            )
        stats_url = base + server.stats_paths[workload] if workload in server.stats_paths else None
        # Stats routes need the same credentials as predict.
        with httpx.Client(timeout=5.0, headers=headers) as client:
            for c in args.concurrency:
                before = _stats(client, stats_url)
                cpu0 = proc.cpu_seconds()
                spy = None
                if server.name in args.profile:
                    spy = _start_profile(args, proc, f"{workload}-{safe_name(server.name)}-c{c}")
                with PeakMemory(proc) as mem:
                    result = load.drive(
                        url,
                        body,
                        headers,
                        concurrency=c,
                        duration_s=args.duration,
                        driver=args.driver,
                        threads=args.threads,
                        timeout_s=args.timeout,
                    )
                cpu = proc.cpu_seconds() - cpu0
                if spy is not None:
                    spy.wait(timeout=60)
                    info.setdefault("flame_graphs", []).append(spy.args[-1])
                row = _row(
                    workload, server.name, result, cpu, mem.peak, server.items.get(workload, 1)
                )
                row["server_stats"] = _stats_delta(before, _stats(client, stats_url))
                rows.append(row)
                print(
                    f"[{workload}] {server.name} c={c}: {row['req_per_s']:.0f} req/s "
                    f"p50 {row['latency_ms'].get('p50', 0):.2f} ms"
                    f" p99 {row['latency_ms'].get('p99', 0):.2f} ms "
                    f"errors {row['errors']['non_2xx']}+{row['errors']['timeout']}",
                    flush=True,
                )
                if proc.proc.poll() is not None:
                    raise ServerFailedError(f"server died during c={c}: {proc.log_tail()}")
    except (ServerFailedError, RuntimeError) as exc:
        info["error"] = str(exc)[:1500]
        print(f"[{workload}] {server.name}: FAILED: {info['error']}", flush=True)
    finally:
        proc.stop()
    return info, rows


def safe_name(label: str) -> str:
    """A server label as a file name part: letters, digits, '.', '_' and '-' only."""
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in label)


def _start_profile(
    args: argparse.Namespace, proc: ServerProcess, label: str
) -> subprocess.Popen[bytes]:
    """py-spy (from the bench/.peers/tools venv) sampling the server for most of one point."""
    # py-spy on PATH (the GPU machine's carried wheel), else the bench tools venv.
    on_path = shutil.which("py-spy")
    spy = Path(on_path) if on_path else peers.ensure_venv("tools").parent / "py-spy"
    svg = args.out / f"flame-{label}.svg"
    seconds = max(1, int(args.duration) - 1)
    cmd = [
        str(spy),
        "record",
        "--pid",
        str(proc.proc.pid),
        "--subprocesses",
        "--rate",
        "200",
        "--duration",
        str(seconds),
        "--nonblocking",
        "--output",
        str(svg),
    ]
    log = svg.with_suffix(".log").open("wb")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def _row(
    workload: str, server: str, result: load.LoadResult, cpu_s: float, peak_rss: int, items: int
) -> dict[str, Any]:
    data = result.as_dict()
    errors = {"non_2xx": result.non_2xx, **result.socket_errors}
    return {
        "workload": workload,
        "server": server,
        "concurrency": result.concurrency,
        "driver": result.driver,
        "duration_s": result.duration_s,
        "requests": result.requests,
        "ok": result.ok,
        "req_per_s": data["req_per_s"],
        # items/s counts only answered (2xx) requests.
        "items_per_s": data["ok_per_s"] * items,
        "items_per_request": items,
        "latency_ms": result.latency_ms,
        "errors": errors,
        "shed_503": result.shed_503,
        "shed_rate": result.shed_503 / result.requests if result.requests else 0.0,
        "peak_rss_mb": peak_rss / 2**20,
        "cpu_s_per_req": cpu_s / result.requests if result.requests else None,
    }


def run(args: argparse.Namespace) -> dict[str, Path]:
    """Do the whole benchmark and write its files."""
    raise_fd_limit()
    args.out.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now().astimezone()
    host = socket.gethostname().split(".")[0]
    headers = {**DEFAULT_HEADERS, **_pairs(args.header, ":")}
    ms_env = _pairs(args.ms_env, "=")
    auth_on = not args.no_auth and "modelserve" in args.servers
    if args.no_auth:
        ms_env = {"MODELSERVE_AUTH__ENABLED": "false", **ms_env}
    if auth_on:
        from bench.auth import provision

        auth_env, auth_headers = provision(server_env_base())
        ms_env = {**auth_env, **ms_env}
        headers.update(auth_headers)
    driver_used = (
        "wrk" if args.driver == "wrk" or (args.driver == "auto" and load.wrk_path()) else "python"
    )
    results: dict[str, Any] = {
        "schema": 1,
        "kind": "smoke" if args.smoke else ("check-peers" if args.check_peers else "full"),
        "started_at": started.isoformat(timespec="seconds"),
        "host": host,
        "machine": machine_info(),
        "settings": {
            "command": " ".join(["python -m bench.run", *sys.argv[1:]]),
            "workloads": args.workloads,
            "servers": args.servers,
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "driver_used": driver_used,
            "wrk_threads": args.threads,
            "timeout_s": args.timeout,
            "modelserve_env": {
                k: ("***" if "KEY" in k.upper() or "SECRET" in k.upper() else v)
                for k, v in ms_env.items()
            },
            "modelserve_auth": "api key" if auth_on else "off",
            "headers": sorted(h for h in headers if h.lower() != "authorization")
            + (["Authorization (API key)"] if auth_on else []),
        },
        "versions": {},
        "ceilings": {},
        "servers": {},
        "runs": [],
        "notes": [],
    }
    if driver_used == "python":
        results["notes"].append(
            "wrk was not on PATH: the pure-Python driver measured this run; "
            "its own CPU cost caps the figures well below wrk's."
        )
    if (os.cpu_count() or 0) <= 2:
        results["notes"].append(
            "The load generator shares the machine's cores with the server under "
            "test, and other work on a shared machine adds noise: compare ratios "
            "within one run, not absolute figures across runs."
        )
    for server_name in args.servers:
        server = all_servers()[server_name]
        if server.peer is not None and any(w in server.workloads for w in args.workloads):
            print(f"peer venv {server.peer}: preparing", flush=True)
            peers.ensure_venv(server.peer)
    results["versions"] = versions(args.servers)
    # Server logs stay out of the committed results: bench/.work is git-ignored.
    log_dir = args.out / "logs" if args.smoke else ROOT / "bench" / ".work" / "logs"
    ms_w2 = modelserve_w2() if "w2" in args.workloads and "modelserve" in args.servers else None
    servers = all_servers(ms_w2)
    for workload in args.workloads:
        if not args.skip_ceiling and not args.check_peers:
            print(f"[{workload}] model ceiling", flush=True)
            results["ceilings"][workload] = model_ceiling(
                workload, args.max_batch, args.ceiling_seconds
            )
        results["servers"][workload] = {}
        for name in args.servers:
            server = servers[name]
            if workload not in server.workloads:
                continue
            info, rows = measure_server(server, workload, args, headers, ms_env, log_dir)
            results["servers"][workload][name] = info
            results["runs"].extend(rows)
    results["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["finished_at"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    results["targets"] = [] if args.check_peers else report.evaluate_targets(results)
    stem = f"{started:%Y-%m-%d}-{host}" + ("-smoke" if args.smoke else "")
    if args.check_peers:
        stem += "-check-peers"
    stem = report.unused_stem(args.out, stem)
    paths = report.write_all(
        results, args.out, stem, plot=not args.no_plot and not args.check_peers
    )
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    return paths


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit status 1 when any server failed to start or answer."""
    args = parse_args(argv)
    started = time.perf_counter()
    paths = run(args)
    data = json.loads(paths["json"].read_text())
    failed = [
        f"{w}/{n}"
        for w, servers in data["servers"].items()
        for n, i in servers.items()
        if i.get("error")
    ]
    print(
        f"done in {time.perf_counter() - started:.0f}s"
        + (f"; FAILED: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
