"""W1 over the Open Inference Protocol V2 (`tritonclient.http`) against W1 on the native route.

One modelserve server (the harness's W1 service, production settings: `MODELSERVE_MODE=prod`,
API-key auth, metrics and access log on) answers every point of the run, in rounds whose order
alternates so drift on a shared machine hits every point alike. Each point drives one route
for `-d` seconds:

* `native`: `POST /v1/models/tiny/predict` with W1's JSON body, from geventhttpclient (the HTTP
  library tritonclient.http itself uses), `--procs` client processes, `-c` connections in all;
* `v2`: `InferenceServerClient.infer("tiny", [x])` from the real, unmodified tritonclient.http,
  as its users call it: `x` an FP64 [1, 4] tensor sent as binary data, the output asked for by
  default (binary), every answer read back (`as_numpy`); same processes and connections;
* `native-wrk` and `v2-wrk` (unless `--no-wrk`): the same two requests, byte for byte
  (tritonclient's own `generate_request_body`), from wrk at `--wrk-c` connections: the
  server's own cost, without the Python clients' share of the 2 cores.

Reported: the median req/s of each point over the rounds, the ratios V2 / native (issue 17's
target is V2 through tritonclient.http >= 0.8x native), the server's CPU per request and the
Python clients' CPU per request (on a 2-core machine the clients and the server share the
CPU, so a heavier client lowers the req/s of its route).

    python -m bench.v2                       # 5 rounds of 5 s, c=16 over 2 client processes
    python -m bench.v2 --rounds 7 -d 8 -c 32 --procs 2 --out bench/results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.auth import provision
from bench.launch import ServerProcess, free_port
from bench.load import run_wrk
from bench.models import W1_INPUT
from bench.report import unused_stem
from bench.run import server_env, server_env_base
from bench.targets import DEFAULT_HEADERS, JSON_BODIES, ROOT, all_servers

MODEL = "tiny"
NATIVE_PATH = f"/v1/models/{MODEL}/predict"
MODES = ("native", "v2")
WRK_MODES = ("native-wrk", "v2-wrk")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.v2", description=__doc__)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("-d", "--duration", type=float, default=5.0, help="seconds per point")
    p.add_argument("-c", "--concurrency", type=int, default=16, help="connections in all")
    p.add_argument("--procs", type=int, default=2, help="client processes sharing -c")
    p.add_argument("--out", type=Path, help="write the .md/.json report into this folder")
    p.add_argument("--no-wrk", action="store_true", help="skip the wrk points")
    p.add_argument("--wrk-c", type=int, default=64, help="wrk connections")
    # Internal: one client process of a round.
    p.add_argument("--drive", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--key", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def drive(mode: str, port: int, key: str, concurrency: int, duration_s: float) -> dict[str, Any]:
    """One client process: `concurrency` greenlets calling one route until the time is up."""
    import gevent
    import numpy as np

    auth = {"Authorization": key} if key else {}
    if mode == "native":
        from geventhttpclient import HTTPClient

        http = HTTPClient("127.0.0.1", port, concurrency=concurrency, network_timeout=30)
        body = JSON_BODIES["w1"]
        headers = {**DEFAULT_HEADERS, **auth}

        def one() -> bool:
            response = http.post(NATIVE_PATH, body=body, headers=headers)
            json.loads(response.read())
            return bool(response.status_code == 200)

    else:
        import tritonclient.http as triton

        client = triton.InferenceServerClient(f"127.0.0.1:{port}", concurrency=concurrency)
        x = triton.InferInput("x", [1, 4], "FP64")
        x.set_data_from_numpy(np.array([W1_INPUT], dtype=np.float64))

        def one() -> bool:
            result = client.infer(MODEL, [x], headers=auth)
            return result.as_numpy("y").shape == (1,)

    ok = errors = 0
    deadline = time.perf_counter() + duration_s

    def worker() -> None:
        nonlocal ok, errors
        while time.perf_counter() < deadline:
            try:
                good = one()
            except Exception:
                good = False
            ok += good
            errors += not good

    started, cpu = time.perf_counter(), time.process_time()
    gevent.joinall([gevent.spawn(worker) for _ in range(concurrency)])
    return {
        "ok": ok,
        "errors": errors,
        "seconds": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu,
    }


def v2_request() -> tuple[bytes, dict[str, str]]:
    """The body and headers tritonclient.http sends for W1's infer (for wrk)."""
    import numpy as np
    import tritonclient.http as triton

    x = triton.InferInput("x", [1, 4], "FP64")
    x.set_data_from_numpy(np.array([W1_INPUT], dtype=np.float64))
    body, json_size = triton.InferenceServerClient.generate_request_body([x])
    return body, {"Inference-Header-Content-Length": str(json_size)}


def wrk_point(
    mode: str, server: ServerProcess, port: int, key: str, args: argparse.Namespace
) -> dict[str, float]:
    """One wrk point: req/s of 2xx answers and server CPU per request."""
    auth = {"Authorization": key}
    if mode == "native-wrk":
        url = f"http://127.0.0.1:{port}{NATIVE_PATH}"
        body, headers = JSON_BODIES["w1"], {**DEFAULT_HEADERS, **auth}
    else:
        url = f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer"
        body, extra = v2_request()
        headers = {**extra, **auth}
    cpu_before = server.cpu_seconds()
    result = run_wrk(url, body, headers, concurrency=args.wrk_c, duration_s=args.duration)
    cpu = server.cpu_seconds() - cpu_before
    return {
        "rps": result.ok_per_s,
        "errors": result.non_2xx + sum(result.socket_errors.values()),
        "cpu_us": cpu / max(1, result.ok) * 1e6,
        "client_cpu_us": float("nan"),  # wrk's C: not the point of these rows
    }


def round_of(
    mode: str, server: ServerProcess, port: int, key: str, args: argparse.Namespace
) -> dict[str, float]:
    """One point: the client processes at once, their answers summed; server CPU per request."""
    if mode in WRK_MODES:
        return wrk_point(mode, server, port, key, args)
    per_proc = max(1, args.concurrency // args.procs)
    command = [sys.executable, "-m", "bench.v2", "--drive", mode, "--port", str(port)]
    command += ["--key", key, "-c", str(per_proc), "-d", str(args.duration)]
    cpu_before = server.cpu_seconds()
    clients = [
        subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, env=server_env_base())
        for _ in range(args.procs)
    ]
    results = [json.loads(c.communicate(timeout=args.duration + 120)[0]) for c in clients]
    cpu = server.cpu_seconds() - cpu_before
    ok = sum(r["ok"] for r in results)
    seconds = statistics.mean(r["seconds"] for r in results)
    return {
        "rps": ok / seconds,
        "errors": sum(r["errors"] for r in results),
        "cpu_us": cpu / max(1, ok) * 1e6,
        "client_cpu_us": sum(r["cpu_s"] for r in results) / max(1, ok) * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print (and with --out, write) the report."""
    args = parse_args(argv)
    if args.drive:
        result = drive(args.drive, args.port, args.key, args.concurrency, args.duration)
        print(json.dumps(result))
        return 0
    base = all_servers()["modelserve"]
    auth_env, auth_headers = provision(server_env_base())
    key = auth_headers["Authorization"]
    port = free_port()
    log = ROOT / "bench" / ".work" / "logs" / "v2.log"
    server = ServerProcess(
        base.command("w1", port), env=server_env(base, auth_env), cwd=ROOT, log_path=log
    )
    modes = MODES if args.no_wrk else MODES + WRK_MODES
    rounds: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    try:
        url = f"http://127.0.0.1:{port}{NATIVE_PATH}"
        server.wait_ready(url, JSON_BODIES["w1"], {**DEFAULT_HEADERS, **auth_headers}, 120)
        # Warm-up, not counted: connections, first-call paths, the tensor map of the version.
        warm = argparse.Namespace(**{**vars(args), "duration": 2.0})
        for mode in modes:
            round_of(mode, server, port, key, warm)
        for index in range(args.rounds):
            order = modes if index % 2 == 0 else tuple(reversed(modes))
            for mode in order:
                point = round_of(mode, server, port, key, args)
                rounds[mode].append(point)
                print(
                    f"round {index + 1} {mode:10s} {point['rps']:8.0f} req/s"
                    f" server {point['cpu_us']:4.0f} us/req, clients"
                    f" {point['client_cpu_us']:4.0f} us/req, errors {point['errors']:.0f}",
                    flush=True,
                )
    finally:
        server.stop()
    data = summary(rounds, args)
    text = markdown(data)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = unused_stem(args.out, f"{data['date']}-{data['host']}-v2")
        (args.out / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
        (args.out / f"{stem}.md").write_text(text)
    return 0


def summary(rounds: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> dict[str, Any]:
    """Medians per route, and the ratios V2 / native (of the medians, and per round)."""
    medians = {
        mode: {
            "rps": statistics.median(p["rps"] for p in points),
            "cpu_us": statistics.median(p["cpu_us"] for p in points),
            "client_cpu_us": statistics.median(p["client_cpu_us"] for p in points),
            "errors": sum(p["errors"] for p in points),
        }
        for mode, points in rounds.items()
    }
    per_round = [
        v2["rps"] / native["rps"] for native, v2 in zip(rounds["native"], rounds["v2"], strict=True)
    ]
    wrk = "native-wrk" in rounds
    return {
        "date": time.strftime("%Y-%m-%d"),
        "host": platform.node() or "host",
        "cpus": os.cpu_count(),
        "rounds": args.rounds,
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "client_processes": args.procs,
        "medians": medians,
        "ratio": medians["v2"]["rps"] / medians["native"]["rps"],
        "ratio_per_round": per_round,
        "wrk_connections": args.wrk_c if wrk else None,
        "wrk_ratio": medians["v2-wrk"]["rps"] / medians["native-wrk"]["rps"] if wrk else None,
        "points": rounds,
    }


def markdown(data: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    native, v2 = data["medians"]["native"], data["medians"]["v2"]
    rounds = ", ".join(f"{r:.2f}" for r in data["ratio_per_round"])
    return (
        f"# W1: V2 (tritonclient.http) vs native ({data['date']}, {data['host']},"
        f" {data['cpus']} CPUs)\n\n"
        f"{data['rounds']} rounds of {data['duration_s']:g} s, c={data['concurrency']} over"
        f" {data['client_processes']} client processes, auth + metrics + access log on.\n\n"
        "| route | req/s (median) | server CPU us/req | client CPU us/req | errors |\n"
        "|---|---|---|---|---|\n"
        f"| native `/v1/models/tiny/predict` | {native['rps']:.0f} | {native['cpu_us']:.0f}"
        f" | {native['client_cpu_us']:.0f} | {native['errors']:.0f} |\n"
        f"| V2 `/v2/models/tiny/infer` | {v2['rps']:.0f} | {v2['cpu_us']:.0f}"
        f" | {v2['client_cpu_us']:.0f} | {v2['errors']:.0f} |\n\n"
        f"V2 / native req/s: **{data['ratio']:.2f}x** (per round: {rounds})\n"
        + (_wrk_rows(data) if data["wrk_ratio"] is not None else "")
    )


def _wrk_rows(data: dict[str, Any]) -> str:
    native, v2 = data["medians"]["native-wrk"], data["medians"]["v2-wrk"]
    return (
        f"\nThe same requests from wrk (c={data['wrk_connections']}), the server's own cost:\n\n"
        "| route | req/s (median) | server CPU us/req | errors |\n|---|---|---|---|\n"
        f"| native | {native['rps']:.0f} | {native['cpu_us']:.0f} | {native['errors']:.0f} |\n"
        f"| V2 (tritonclient's bytes) | {v2['rps']:.0f} | {v2['cpu_us']:.0f}"
        f" | {v2['errors']:.0f} |\n\n"
        f"V2 / native req/s from wrk: **{data['wrk_ratio']:.2f}x**\n"
    )


if __name__ == "__main__":
    sys.exit(main())
