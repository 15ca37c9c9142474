"""GPU benchmark (run through `bench/gpu.sh` on a GPU machine): W3 images and W2G sentences.

For each workload: the pipeline alone in a tight loop at batch 1..max (plus, on CUDA, the
forward alone and a CUDA-graph replay at batch 1), then each planned server configuration
(`--run`, default DEFAULT_PLAN: modelserve with 4, 8 and 12 processes, LitServe at its best
configuration) driven at its concurrencies. W2G is also driven with `/predict/batch` bodies of
32 sentences (`w2g-b32`). Writes `<out>/<date>-<host>-gpu.{json,md,png}` with the targets of
issue 3 (the JSON and Markdown after every server, so a run cut short keeps what it measured).

    python -m bench.gpu                       # on the GPU machine, cuda
    python -m bench.gpu --tiny                # tiny models on CPU: checks imports and wiring
    python -m bench.gpu --run modelserve:w2g:workers=4:c=256,1024

The load generator is wrk when on PATH (gpu.sh puts a carried copy there), with `--threads`
threads, else the pure-Python driver in `--threads` processes (far slower: a few thousand
requests/s per process).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import importlib.util
import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench import report
from bench.load import wrk_path
from bench.models import W2_SENTENCE
from bench.run import machine_info, measure_server, raise_fd_limit, server_env_base
from bench.targets import DEFAULT_HEADERS, MS_PROTOCOL, PRODUCTION_ENV, ROOT, Server, project_python

GPU_APP = ROOT / "bench" / "servers" / "gpu_services.py"
SENTENCE = W2_SENTENCE  # the CPU run's W2 sentence
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


@dataclass(frozen=True)
class Plan:
    """One server configuration driven at its own concurrencies (`--run`)."""

    server: str  # modelserve | litserve
    workload: str
    concurrency: tuple[int, ...]
    workers: int = 1
    api_servers: int = 1
    replicas: int = 2

    @property
    def label(self) -> str:
        """The server's name in the report: its kind and process layout."""
        if self.server == "litserve":
            return f"litserve {self.workers}w/{self.api_servers}api"
        return "modelserve" if self.workers == 1 else f"modelserve x{self.workers}"

    @classmethod
    def parse(cls, text: str) -> Plan:
        """`SERVER:WORKLOAD[:c=1,8][:workers=N][:api=N][:replicas=N]`."""
        server, workload, *opts = text.split(":")
        if server not in ("modelserve", "litserve") or workload not in WORKLOADS:
            raise argparse.ArgumentTypeError(f"unknown server or workload in {text!r}")
        if server == "litserve" and workload == "w2g-b32":
            raise argparse.ArgumentTypeError("litserve takes one sentence per request")
        values = dict(o.split("=", 1) for o in opts)
        unknown = set(values) - {"c", "workers", "api", "replicas"}
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown option(s) {sorted(unknown)} in {text!r}")
        return cls(
            server=server,
            workload=workload,
            concurrency=tuple(int(c) for c in values.get("c", "1,8,64,256").split(",")),
            workers=int(values.get("workers", 1)),
            api_servers=int(values.get("api", 1)),
            replicas=int(values.get("replicas", 2)),
        )


# What `bash bench/gpu.sh` runs (about 4-5 minutes on an H200): W3 with 4 processes (one
# process is bound by its event loop at about 1k base64 images/s; 8 processes did no better than
# 4); W2G with 8 and 12 processes; W2G with 32-sentence bodies; LitServe at the configuration
# issue 3 found to be its best on an H100.
DEFAULT_PLAN = (
    "modelserve:w3:workers=4:c=1,64,256",
    "modelserve:w2g:workers=8:c=256,1024",
    "modelserve:w2g:workers=12:c=1024",
    "modelserve:w2g-b32:workers=8:c=32,64,128",
    "litserve:w2g:workers=2:api=4:c=256,1024",
    "litserve:w3:workers=2:api=4:c=256",
)
TINY_PLAN = (
    "modelserve:w3:c=1,8",
    "modelserve:w2g:workers=2:c=8",
    "modelserve:w2g-b32:c=8",
    "litserve:w2g:workers=1:api=1:c=8",
)


def litserve_python() -> str | None:
    """An interpreter that imports litserve: this one (gpu.sh's wheels), else the CPU peer venv."""
    if importlib.util.find_spec("litserve") is not None:
        return project_python()
    from bench import peers

    if peers.is_ready("litserve"):
        return str(peers.venv_python("litserve"))
    return None


def plan_server(
    plan: Plan, device: str, tiny: bool, max_batch: int | None, auth_env: dict[str, str]
) -> Server:
    """The `Server` the harness starts for one plan entry."""
    from bench.gpu_models import sample_image

    image = base64.b64encode(sample_image(tiny)).decode()
    env = {"BENCH_GPU_TINY": "1" if tiny else "0", "TOKENIZERS_PARALLELISM": "false"}
    paths = {"w3": "/predict", "w2g": "/predict"}
    bodies = {
        # LitServe parses JSON bodies: it gets the image base64-encoded; modelserve the raw bytes.
        "w3": json.dumps({"image_b64": image}).encode()
        if plan.server == "litserve"
        else sample_image(tiny),
        "w2g": json.dumps({"text": SENTENCE}).encode(),
        "w2g-b32": json.dumps({"inputs": [{"text": SENTENCE}] * 32}).encode(),
    }
    settings: dict[str, Any] = {"device": device, "tiny": tiny}
    if plan.server == "litserve":
        python = litserve_python() or project_python()
        batch = max_batch or 64
        settings |= {
            "workers_per_device": plan.workers,
            "num_api_servers": plan.api_servers,
            "fast_queue": True,
            "max_batch_size": batch,
            "batch_timeout_s": 0.005,
        }

        def litserve_command(workload: str, port: int) -> list[str]:
            return [
                python,
                "-m",
                "bench.servers.litserve_gpu",
                "--workload",
                workload,
                "--port",
                str(port),
                "--workers",
                str(plan.workers),
                "--api-servers",
                str(plan.api_servers),
                "--max-batch",
                str(batch),
            ]

        return Server(
            name=plan.label,
            workloads=WORKLOADS,
            command=litserve_command,
            paths=paths,
            bodies=bodies,
            settings={plan.workload: settings},
            version_of="litserve",
            env=env,
        )

    classes = {"w3": "ImageService", "w2g": "SentenceService", "w2g-b32": "SentenceService"}
    models = {"w3": "resnet", "w2g": "minilm-gpu", "w2g-b32": "minilm-gpu"}
    env |= {**PRODUCTION_ENV, **auth_env, "BENCH_GPU_REPLICAS": str(plan.replicas)}
    if max_batch is not None:
        env["BENCH_GPU_MAX_BATCH"] = str(max_batch)
    settings |= {
        "workers": plan.workers,
        "replicas_per_worker": plan.replicas,
        "batching": f"max {max_batch or (128 if plan.workload == 'w3' else 256)}, wait 2 ms",
        "body": "raw image bytes (application/octet-stream)" if plan.workload == "w3" else "JSON",
        "auth": "api key" if auth_env else "off",
        "protocol": MS_PROTOCOL,
    }

    def command(workload: str, port: int) -> list[str]:
        return [
            project_python(),
            "-m",
            "modelserve",
            "serve",
            f"{GPU_APP}:{classes[workload]}",
            "--port",
            str(port),
            "--workers",
            str(plan.workers),
            "--device",
            device,
            "--log-level",
            "warning",
        ]

    return Server(
        name=plan.label,
        workloads=WORKLOADS,
        command=command,
        paths={w: f"/v1/models/{m}/predict" for w, m in models.items()}
        | {"w2g-b32": "/v1/models/minilm-gpu/predict/batch"},
        bodies=bodies,
        settings={plan.workload: settings},
        version_of="modelserve",
        # With several processes each GET lands on any one of them, so before/after readings
        # would mix two processes' counters: batch sizes are read with one process only.
        stats_paths={w: f"/v1/models/{m}" for w, m in models.items()} if plan.workers == 1 else {},
        env=env,
        items={"w2g-b32": 32},
    )


def gpu_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 3's GPU targets, as ratios within this run where the issue states them so."""
    out: list[dict[str, Any]] = []

    def rows(w: str, server: str) -> list[dict[str, Any]]:
        return [r for r in results["runs"] if r["workload"] == w and r["server"].startswith(server)]

    def best(w: str, server: str) -> float | None:
        found = [x["items_per_s"] for x in rows(w, server)]
        return max(found) if found else None

    w3 = best("w3", "modelserve")
    ceil = results["ceilings"].get("w3", {}).get("at_max_batch", {}).get("items_per_s")
    if w3 is not None and ceil:
        r = w3 / ceil
        out.append(
            {
                "id": "w3-vs-model",
                "what": "W3 best img/s / pipeline alone at max batch",
                "value": r,
                "goal": ">= 0.85x",
                "met": r >= 0.85,
            }
        )
    c1 = [x for x in rows("w3", "modelserve") if x["concurrency"] == 1]
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
    ms, lit = best("w2g", "modelserve"), best("w2g", "litserve")
    if ms is not None and lit:
        out.append(
            {
                "id": "w2g-vs-litserve",
                "what": "W2G best sentences/s / LitServe's best (one sentence per request)",
                "value": ms / lit,
                "goal": ">= 10x",
                "met": ms / lit >= 10,
            }
        )
    for w, goal in (("w2g", 20_000.0), ("w2g-b32", 50_000.0)):
        rate = best(w, "modelserve")
        if rate is not None:
            out.append(
                {
                    "id": f"{w}-rate",
                    "what": f"{w.upper()} best sentences/s",
                    "value": rate,
                    "goal": f">= {goal:,.0f}/s",
                    "met": rate >= goal,
                }
            )
    return out


def _ceiling(base: str, device: str, args: argparse.Namespace) -> dict[str, Any] | str:
    """The pipeline alone, in its own process (its CUDA context is gone before servers run)."""
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
        print(proc.stderr[-2000:], file=sys.stderr, flush=True)
        return proc.stderr[-500:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"[{base}] best {result['best']}", flush=True)
    return result


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("modelserve", "litserve", "torch", "transformers", "uvicorn", "fastapi"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    if out["modelserve"] is None:  # gpu.sh runs it from src/, not installed
        import modelserve

        out["modelserve"] = getattr(modelserve, "__version__", None)
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
    p.add_argument(
        "--run",
        action="append",
        type=Plan.parse,
        metavar="SERVER:WORKLOAD[:c=..][:workers=N][:api=N][:replicas=N]",
        help=f"one server configuration (repeatable); default: {' '.join(DEFAULT_PLAN)}",
    )
    p.add_argument("-d", "--duration", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=4, help="wrk threads / driver processes")
    p.add_argument("--driver", choices=["auto", "wrk", "python"], default="auto")
    p.add_argument("--max-batch", type=int, help="largest batch (default 128 W3, 256 W2G)")
    p.add_argument("--ceiling-seconds", type=float, default=1.5)
    p.add_argument("--no-auth", action="store_true", help="modelserve without API-key auth")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="LABEL",
        help="py-spy flame graph of every point of the server so labelled (e.g. 'modelserve x12')",
    )
    p.add_argument("--ceiling-only", metavar="WORKLOAD", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    device = args.device or ("cpu" if args.tiny else "cuda")
    if args.tiny:
        args.duration, args.ceiling_seconds = min(args.duration, 1.0), 0.1
        args.max_batch = args.max_batch or 8
        args.threads = 1  # a 2-core machine: more driver processes only fight the server
    if args.ceiling_only:
        mb = args.max_batch or (128 if args.ceiling_only == "w3" else 256)
        print(json.dumps(ceiling(args.ceiling_only, device, args.tiny, mb, args.ceiling_seconds)))
        return 0
    plans: list[Plan] = args.run or [
        Plan.parse(x) for x in (TINY_PLAN if args.tiny else DEFAULT_PLAN)
    ]
    raise_fd_limit()
    driver = "wrk" if args.driver == "wrk" or (args.driver == "auto" and wrk_path()) else "python"
    workloads = list(dict.fromkeys(plan.workload for plan in plans))
    headers = dict(DEFAULT_HEADERS)
    auth_env: dict[str, str] = {}
    if not args.no_auth and any(plan.server == "modelserve" for plan in plans):
        from bench.auth import provision

        auth_env, auth_headers = provision(server_env_base())
        headers.update(auth_headers)
    started = dt.datetime.now().astimezone()
    host = socket.gethostname().split(".")[0]
    stem = report.unused_stem(
        args.out, f"{started:%Y-%m-%d}-{host}-gpu" + ("-tiny" if args.tiny else "")
    )
    results: dict[str, Any] = {
        "schema": 1,
        "kind": "gpu-tiny" if args.tiny else "gpu",
        "started_at": started.isoformat(timespec="seconds"),
        "host": host,
        "machine": machine_info() | {"gpu": _gpu_name(device)},
        "settings": {
            "command": " ".join(["python -m bench.gpu", *sys.argv[1:]]),
            "workloads": workloads,
            "plan": [plan.__dict__ | {"label": plan.label} for plan in plans],
            "servers": list(dict.fromkeys(plan.label for plan in plans)),
            "concurrency": sorted({c for plan in plans for c in plan.concurrency}),
            "duration_s": args.duration,
            "warmup_s": 1.0 if args.tiny else 2.0,
            "driver_used": driver,
            "wrk_threads": args.threads,
            "timeout_s": 30.0,
            "device": device,
            "modelserve_auth": "api key" if auth_env else "off",
        },
        "versions": _versions(),
        "ceilings": {},
        "servers": {},
        "runs": [],
        "notes": [
            "W3 bodies: modelserve gets the raw 150,528 image bytes (application/octet-stream),"
            " LitServe the image base64-encoded in JSON.",
            "The load generator runs on the same machine as the servers.",
        ],
    }
    log_dir = ROOT / "bench" / ".work" / "logs"
    failed: list[str] = []
    for plan in plans:
        base = "w3" if plan.workload == "w3" else "w2g"
        if base not in results["ceilings"]:
            found = _ceiling(base, device, args)
            if isinstance(found, str):
                results["notes"].append(f"{base} pipeline ceiling failed: {found}")
                results["ceilings"][base] = {}
            else:
                results["ceilings"][base] = found
        if plan.server == "litserve" and litserve_python() is None:
            results["notes"].append(f"{plan.label} skipped: litserve is not importable here")
            continue
        server = plan_server(plan, device, args.tiny, args.max_batch, auth_env)
        run_args = argparse.Namespace(
            startup_timeout=300.0 if not args.tiny else 120.0,
            check_peers=False,
            warmup=results["settings"]["warmup_s"],
            concurrency=list(plan.concurrency),
            driver=driver,
            threads=args.threads,
            timeout=30.0,
            duration=args.duration,
            profile=args.profile,
            out=args.out,
        )
        plan_headers = dict(headers)
        if plan.workload == "w3" and plan.server == "modelserve":
            plan_headers["Content-Type"] = "application/octet-stream"
        info, rows = measure_server(server, plan.workload, run_args, plan_headers, {}, log_dir)
        results["servers"].setdefault(plan.workload, {})[plan.label] = info
        results["versions"].setdefault(plan.label, results["versions"].get(plan.server))
        results["runs"].extend(rows)
        if info.get("error"):
            failed.append(f"{plan.workload} {plan.label}")
        # Written after every server: a run cut short still leaves what it measured.
        results["targets"] = gpu_targets(results)
        report.write_all(results, args.out, stem, plot=False)
    results["targets"] = gpu_targets(results)
    for kind, path in report.write_all(results, args.out, stem).items():
        print(f"wrote {kind}: {path}")
    for t in results["targets"]:
        print(f"target {t['what']}: {t['value']} (goal {t['goal']}, met {t['met']})")
    return 1 if failed else 0


def _gpu_name(device: str) -> str | None:
    if not device.startswith("cuda"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
