"""GPU benchmark (run through `bench/gpu.sh` on a GPU machine): W3 images and W2G sentences.

For each workload: the pipeline alone in a tight loop at batch 1..max (plus, on CUDA, the
forward alone and a CUDA-graph replay at batch 1), then modelserve serving it at each
concurrency. W2G is also driven with `/predict/batch` bodies of 32 sentences (`w2g-b32`).
Writes `<out>/<date>-<host>-gpu.{json,md,png}` with the targets of issue 3.

    python -m bench.gpu                       # on the GPU machine, cuda
    python -m bench.gpu --tiny                # tiny models on CPU: checks imports and wiring

The GPU machine has no wrk: the pure-Python driver runs in `--threads` processes (default 4).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.run import machine_info, measure_server, raise_fd_limit, versions
from bench.targets import DEFAULT_HEADERS, ROOT, Server, project_python

GPU_APP = ROOT / "bench" / "servers" / "gpu_services.py"
SENTENCE = "The quick brown fox jumps over the lazy dog."
WORKLOADS = ("w3", "w2g", "w2g-b32")


def ceiling(
    workload: str, device: str, tiny: bool, max_batch: int, seconds: float
) -> dict[str, Any]:
    """The pipeline alone at batch 1..max_batch; items/s per batch, best, and batch-1 extras."""
    import torch

    from bench.ceiling import batch_sizes
    from bench.gpu_models import MiniLMShaped, ResNetPipeline, sample_image

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    if workload == "w3":
        pipe = ResNetPipeline(device, tiny=tiny)
        image = sample_image(tiny)

        def call(n: int) -> None:
            pipe.predict([image] * n)
    else:
        model = MiniLMShaped(device, tiny=tiny)

        def call(n: int) -> None:
            model.embed([SENTENCE] * n)

    points = []
    for size in batch_sizes(max_batch):
        call(size)
        sync()
        calls, started, elapsed = 0, time.perf_counter(), 0.0
        while calls < 3 or elapsed < seconds:
            call(size)
            calls += 1
            elapsed = time.perf_counter() - started
        points.append(
            {
                "batch": size,
                "items_per_s": size * calls / elapsed,
                "ms_per_batch": elapsed / calls * 1e3,
            }
        )
    out: dict[str, Any] = {
        "workload": workload,
        "points": points,
        "best": max(points, key=lambda p: p["items_per_s"]),
        "at_max_batch": points[-1],
    }
    if workload == "w3" and device.startswith("cuda"):
        out.update(_w3_device_only(pipe, max_batch, seconds))
    return out


def _w3_device_only(pipe: Any, max_batch: int, seconds: float) -> dict[str, Any]:
    """Forward alone on device at max batch, and batch-1 latency with a CUDA graph."""
    import torch

    side = pipe.side
    x = torch.randn(max_batch, 3, side, side, device=pipe.device, dtype=pipe.dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        pipe.model(x)
        torch.cuda.synchronize()
        calls, started = 0, time.perf_counter()
        while calls < 3 or time.perf_counter() - started < seconds:
            pipe.model(x)
            calls += 1
        torch.cuda.synchronize()
        forward_ips = max_batch * calls / (time.perf_counter() - started)
        static = x[:1].clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                pipe.model(static)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            pipe.model(static)
        samples = []
        for _ in range(200):
            t = time.perf_counter()
            graph.replay()
            torch.cuda.synchronize()
            samples.append((time.perf_counter() - t) * 1e3)
    samples.sort()
    return {
        "forward_only_items_per_s": forward_ips,
        "graph_batch1_p50_ms": samples[len(samples) // 2],
    }


def gpu_servers(device: str, tiny: bool, max_batch: int | None) -> Server:
    """modelserve serving the GPU services."""
    from bench.gpu_models import sample_image

    image = base64.b64encode(sample_image(tiny)).decode()
    classes = {"w3": "ImageService", "w2g": "SentenceService", "w2g-b32": "SentenceService"}

    def command(workload: str, port: int) -> list[str]:
        return [
            project_python(),
            "-m",
            "modelserve",
            "serve",
            f"{GPU_APP}:{classes[workload]}",
            "--port",
            str(port),
            "--device",
            device,
            "--log-level",
            "warning",
        ]

    env = {"BENCH_GPU_TINY": "1" if tiny else "0", "MODELSERVE_MODE": "prod"}
    if max_batch is not None:
        env["BENCH_GPU_MAX_BATCH"] = str(max_batch)
    return Server(
        name="modelserve",
        workloads=WORKLOADS,
        command=command,
        paths={
            "w3": "/v1/models/resnet/predict",
            "w2g": "/v1/models/minilm-gpu/predict",
            "w2g-b32": "/v1/models/minilm-gpu/predict/batch",
        },
        bodies={
            "w3": json.dumps({"image_b64": image}).encode(),
            "w2g": json.dumps({"text": SENTENCE}).encode(),
            "w2g-b32": json.dumps({"inputs": [{"text": SENTENCE}] * 32}).encode(),
        },
        settings={
            w: {"device": device, "tiny": tiny, "body": "JSON (W3: base64 image)"}
            for w in WORKLOADS
        },
        version_of="modelserve",
        stats_paths={
            "w3": "/v1/models/resnet",
            "w2g": "/v1/models/minilm-gpu",
            "w2g-b32": "/v1/models/minilm-gpu",
        },
        env=env,
        items={"w2g-b32": 32},
    )


def gpu_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 3's GPU targets that modelserve alone can be held to."""
    out = []

    def rows(w: str) -> list[dict[str, Any]]:
        return [r for r in results["runs"] if r["workload"] == w and r["server"] == "modelserve"]

    w3 = rows("w3")
    ceil = results["ceilings"].get("w3", {}).get("at_max_batch", {}).get("items_per_s")
    if w3 and ceil:
        r = max(x["items_per_s"] for x in w3) / ceil
        out.append(
            {
                "id": "w3-vs-model",
                "what": "W3 best img/s / pipeline at max batch",
                "value": r,
                "goal": ">= 0.85x",
                "met": r >= 0.85,
            }
        )
    c1 = [x for x in w3 if x["concurrency"] == 1]
    if c1:
        p50 = c1[0]["latency_ms"].get("p50")
        out.append(
            {
                "id": "w3-c1-p50",
                "what": "W3 batch-1 end-to-end p50 (ms)",
                "value": p50,
                "goal": "<= 2 ms",
                "met": p50 is not None and p50 <= 2.0,
            }
        )
    for w, goal in (("w2g", 20_000.0), ("w2g-b32", 50_000.0)):
        if rows(w):
            best = max(x["items_per_s"] for x in rows(w))
            out.append(
                {
                    "id": f"{w}-rate",
                    "what": f"{w.upper()} best sentences/s",
                    "value": best,
                    "goal": f">= {goal:,.0f}/s",
                    "met": best >= goal,
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the GPU benchmark (or one `ceiling` measurement when called with that subcommand)."""
    p = argparse.ArgumentParser(
        prog="python -m bench.gpu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--tiny", action="store_true", help="tiny models on CPU, seconds-long")
    p.add_argument("--device", help="default: cuda, or cpu with --tiny")
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("-c", "--concurrency", default="1,8,64,256,1024")
    p.add_argument("-d", "--duration", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=4, help="load driver processes")
    p.add_argument("--max-batch", type=int, help="largest batch (default 128 W3, 256 W2G)")
    p.add_argument("--ceiling-seconds", type=float, default=2.0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--ceiling-only", metavar="WORKLOAD", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    device = args.device or ("cpu" if args.tiny else "cuda")
    if args.tiny:
        args.duration, args.concurrency, args.ceiling_seconds = min(args.duration, 1.0), "1,8", 0.1
        args.max_batch = args.max_batch or 8
        args.threads = 1  # a 2-core machine: more driver processes only fight the server
    if args.ceiling_only:
        mb = args.max_batch or (128 if args.ceiling_only == "w3" else 256)
        print(json.dumps(ceiling(args.ceiling_only, device, args.tiny, mb, args.ceiling_seconds)))
        return 0
    raise_fd_limit()
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    run_args = argparse.Namespace(
        startup_timeout=600.0,
        check_peers=False,
        warmup=1.0 if args.tiny else 3.0,
        concurrency=[int(c) for c in args.concurrency.split(",")],
        driver="python",
        threads=args.threads,
        timeout=30.0,
        duration=args.duration,
        profile=[],
        out=args.out,
    )
    started = dt.datetime.now().astimezone()
    host = socket.gethostname().split(".")[0]
    results: dict[str, Any] = {
        "schema": 1,
        "kind": "gpu-tiny" if args.tiny else "gpu",
        "started_at": started.isoformat(timespec="seconds"),
        "host": host,
        "machine": machine_info(),
        "settings": {
            "command": " ".join(["python -m bench.gpu", *sys.argv[1:]]),
            "workloads": workloads,
            "servers": ["modelserve"],
            "concurrency": run_args.concurrency,
            "duration_s": args.duration,
            "warmup_s": run_args.warmup,
            "driver_used": "python",
            "wrk_threads": args.threads,
            "timeout_s": run_args.timeout,
            "device": device,
        },
        "versions": versions(["modelserve"]),
        "ceilings": {},
        "servers": {},
        "runs": [],
        "notes": ["W3 bodies are base64 JSON: modelserve has no raw binary input yet."],
    }
    server = gpu_servers(device, args.tiny, args.max_batch)
    log_dir = ROOT / "bench" / ".work" / "logs"
    for workload in workloads:
        base = "w3" if workload == "w3" else "w2g"
        if base not in results["ceilings"]:
            cmd = [
                project_python(),
                "-m",
                "bench.gpu",
                "--ceiling-only",
                base,
                "--device",
                device,
                "--ceiling-seconds",
                str(args.ceiling_seconds),
            ]
            cmd += ["--tiny"] if args.tiny else []
            cmd += ["--max-batch", str(args.max_batch)] if args.max_batch else []
            print(f"[{base}] pipeline ceiling", flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                return 1
            results["ceilings"][base] = json.loads(proc.stdout.strip().splitlines()[-1])
        info, rows = measure_server(server, workload, run_args, dict(DEFAULT_HEADERS), {}, log_dir)
        results["servers"][workload] = {"modelserve": info}
        results["runs"].extend(rows)
    results["targets"] = gpu_targets(results)
    stem = f"{started:%Y-%m-%d}-{host}-gpu" + ("-tiny" if args.tiny else "")
    for kind, path in report.write_all(results, args.out, stem).items():
        print(f"wrote {kind}: {path}")
    failed = [w for w, s in results["servers"].items() if s["modelserve"].get("error")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
