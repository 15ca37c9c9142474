"""`python -m bench.jobs`: batch jobs on MiniLM (W2), measured against the model alone.

One run, one machine, ratios within the run (docs/performance.md, "Batch jobs"):

1. **The model alone**: `SentenceTransformer.encode` on the job's own texts at batch 16, 32, 64
   and 128, in this process, before the servers run and again after the embedded job; the best
   batch's items/s is the ceiling.
2. **Embedded runner**: `modelserve serve examples/embeddings.py` (SQLite, auth off), the rows
   uploaded as JSON lines and run as one job; rows/s from the job's own `started_at` and
   `finished_at`. Target: >= 0.9 x the ceiling.
3. **Online requests while a job runs**: W2 requests (one text each) at c=16 with wrk, after a
   warm-up, in `--rounds` pairs of `--seconds` windows: no job, then a job running (medians).
   Target: p99 with the job <= 1.5 x p99 without.
4. **Celery**: a server with `MODELSERVE_JOBS__RUNNER=celery` and `modelserve worker
   --concurrency 2` on RabbitMQ (a queue of the run's own, deleted after) run the same job;
   every row must match the embedded run's output within `TOLERANCE`.

    python -m bench.jobs                        # 100,000 rows (about 15 min on 2 shared cores)
    python -m bench.jobs --rows 20000 --seconds 15
    python -m bench.jobs --skip-celery --markdown

Nothing here asserts a target: the script measures and reports (stdout, and with `--out` a
Markdown file); docs/performance.md keeps the figures of a run with the command that made it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.load import drive
from bench.models import W2_SENTENCE, MiniLM

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "embeddings.py"
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
CEILING_BATCHES = (16, 32, 64, 128)
CEILING_SAMPLE = 1024
# Embeddings are rounded to 8 decimals by the example; batches of other sizes and compositions
# differ in the last float32 bits, well under this.
TOLERANCE = 1e-5
PART_BYTES = 4 * 1024 * 1024
STARTUP_S = 180.0


def texts(rows: int) -> list[str]:
    """W2-like sentences, each different (so no cache or dedup can help)."""
    return [
        f"{W2_SENTENCE} Row {i} of the batch, number {i * 7919 % 100_003}." for i in range(rows)
    ]


def ceiling(sample: list[str], seconds: float) -> dict[str, Any]:
    """items/s of the model alone at each batch size on `sample`, and the best."""
    model = MiniLM()
    points = []
    for size in CEILING_BATCHES:
        model.embed(sample[:size])  # warm-up
        done = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds or done < 2 * size:
            start = done % (len(sample) - size)
            model.embed(sample[start : start + size])
            done += size
        points.append({"batch": size, "items_per_s": done / (time.perf_counter() - started)})
    del model
    gc.collect()
    best = max(points, key=lambda p: p["items_per_s"])
    return {"points": points, "best": best}


@dataclass
class Proc:
    """A modelserve process of this run (server or worker) and its log."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@contextlib.contextmanager
def started(name: str, args: list[str], env: dict[str, str], work: Path) -> Iterator[Proc]:
    log = work / f"{name}.log"
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}, **env}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelserve", *args],
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    handle = Proc(name, proc, log)
    try:
        yield handle
    finally:
        handle.stop()


def wait_ready(base: str, proc: Proc) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"{proc.name} exited:\n{proc.log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} not ready:\n{proc.log.read_text()[-3000:]}")


def wait_worker(proc: Proc) -> None:
    deadline = time.monotonic() + STARTUP_S
    while " ready." not in proc.log.read_text(errors="replace"):
        if proc.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker not ready:\n{proc.log.read_text()[-3000:]}")
        time.sleep(0.2)


def upload(client: httpx.Client, data: bytes) -> str:
    upload_id: str = client.post("/v1/uploads").json()["id"]
    for offset in range(0, len(data), PART_BYTES):
        piece = data[offset : offset + PART_BYTES]
        answer = client.put(f"/v1/uploads/{upload_id}", params={"offset": offset}, content=piece)
        answer.raise_for_status()
    client.post(f"/v1/uploads/{upload_id}/complete").raise_for_status()
    return upload_id


def submit(client: httpx.Client, upload_id: str, chunk_size: int | None = None) -> str:
    body: dict[str, Any] = {"model": "minilm", "input": {"upload_id": upload_id}, "format": "jsonl"}
    if chunk_size is not None:
        body["chunk_size"] = chunk_size
    answer = client.post("/v1/jobs", json=body)
    answer.raise_for_status()
    job_id: str = answer.json()["id"]
    return job_id


def wait_job(client: httpx.Client, job_id: str, states: tuple[str, ...]) -> dict[str, Any]:
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(1.0)


def job_rate(job: dict[str, Any]) -> float:
    """Rows per second between the job's first lease and its last checkpoint."""
    start = dt.datetime.fromisoformat(job["started_at"].replace("Z", "+00:00"))
    end = dt.datetime.fromisoformat(job["finished_at"].replace("Z", "+00:00"))
    return float(job["rows"]["total"]) / max(1e-9, (end - start).total_seconds())


def results(client: httpx.Client, job_id: str) -> dict[int, list[float]]:
    body = client.get(f"/v1/jobs/{job_id}/results", timeout=300).content
    return {r["row"]: r["output"]["embedding"] for r in map(orjson.loads, body.splitlines())}


@dataclass
class Report:
    rows: int
    seconds: float
    settings: dict[str, str] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)

    def markdown(self) -> str:
        f = self.figures
        ceiling = f["ceiling_items_per_s"]
        lines = [
            f"`python -m bench.jobs --rows {self.rows} --seconds {self.seconds:g}` on"
            f" {platform.node()} ({os.cpu_count()} cores), load average before"
            f" {f['load_before']}, {f['date']}.",
            "",
            "| figure | value | target | met |",
            "|---|---|---|---|",
            f"| model alone, best batch ({f['ceiling_batch']}), items/s | {ceiling:,.0f}"
            f" (before {f['ceiling_before']:,.0f}, after {f['ceiling_after']:,.0f}) | | |",
        ]
        at_max = statistics.mean(
            p["items_per_s"] for run in f["ceiling_points"] for p in run if p["batch"] == 64
        )
        lines.append(
            f"| model alone at batch 64 (the example's `max_batch_size`), items/s | {at_max:,.0f}"
            " | | |"
        )
        embedded = f["embedded_rows_per_s"]
        ratio = embedded / ceiling
        lines.append(
            f"| embedded runner, rows/s | {embedded:,.0f} ({ratio:.2f} x the model alone) |"
            f" >= 0.9 x | {'yes' if ratio >= 0.9 else 'no'} |"
        )
        if "p99_alone_ms" in f:
            p99 = f["p99_with_job_ms"] / f["p99_alone_ms"]
            lines.append(
                f"| W2 requests at c=16, p99 alone / with a job running, ms |"
                f" {f['p99_alone_ms']:.0f} / {f['p99_with_job_ms']:.0f} ({p99:.2f} x;"
                f" {f['req_per_s_alone']:.0f} / {f['req_per_s_with_job']:.0f} req/s; job"
                f" {f['job_rows_per_s_under_load']:.0f} rows/s meanwhile) | <= 1.5 x |"
                f" {'yes' if p99 <= 1.5 else 'no'} |"
            )
        if "celery_rows_per_s" in f:
            lines.append(
                f"| Celery, 2 worker processes, rows/s | {f['celery_rows_per_s']:,.0f}"
                f" ({f['celery_rows_per_s'] / ceiling:.2f} x) | finishes | "
                f"{'yes' if f['celery_state'] == 'succeeded' else 'no'} |"
            )
            same = f["rows_matching"] == self.rows
            lines.append(
                f"| Celery rows equal to the embedded run's (max abs difference"
                f" {f['max_abs_diff']:.1e}) | {f['rows_matching']:,} of {self.rows:,} |"
                f" all, within {TOLERANCE:g} | {'yes' if same else 'no'} |"
            )
        return "\n".join(lines)


def latency(base: str, seconds: float) -> dict[str, float]:
    result = drive(
        base + "/v1/models/minilm/predict",
        json.dumps({"text": W2_SENTENCE}).encode(),
        {"content-type": "application/json"},
        concurrency=16,
        duration_s=seconds,
    )
    return {"p99_ms": result.latency_ms.get("p99", float("nan")), "req_per_s": result.req_per_s}


def latency_windows(
    args: argparse.Namespace, client: httpx.Client, base: str, upload_id: str, f: dict[str, Any]
) -> None:
    """W2 at c=16: a warm-up, then `--rounds` pairs of windows, without and with a job running
    (a new one each time, cancelled after); medians of the pairs."""
    latency(base, 3.0)  # warm-up: the first batches pay for allocation and kernel choice
    alone: list[dict[str, float]] = []
    loaded: list[dict[str, float]] = []
    rates: list[float] = []
    for _ in range(args.rounds):
        alone.append(latency(base, args.seconds))
        # Small chunks: progress shows per checkpointed chunk, and a window must see several.
        probe = submit(client, upload_id, chunk_size=64)
        wait_job(client, probe, ("running", "succeeded", "failed"))
        done_before = client.get(f"/v1/jobs/{probe}").json()["rows"]["done"]
        loaded.append(latency(base, args.seconds))
        done_after = client.get(f"/v1/jobs/{probe}").json()["rows"]["done"]
        client.post(f"/v1/jobs/{probe}/cancel")
        rates.append((done_after - done_before) / args.seconds)
        print(f"latency: {alone[-1]} alone, {loaded[-1]} with a job", file=sys.stderr)
    f.update(
        p99_alone_ms=statistics.median(w["p99_ms"] for w in alone),
        req_per_s_alone=statistics.median(w["req_per_s"] for w in alone),
        p99_with_job_ms=statistics.median(w["p99_ms"] for w in loaded),
        req_per_s_with_job=statistics.median(w["req_per_s"] for w in loaded),
        job_rows_per_s_under_load=statistics.median(rates),
        latency_windows=[alone, loaded],
    )


def run(args: argparse.Namespace) -> Report:
    report = Report(args.rows, args.seconds)
    f = report.figures
    f["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    f["load_before"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    all_texts = texts(args.rows)
    data = b"".join(orjson.dumps({"text": t}) + b"\n" for t in all_texts)
    before = ceiling(all_texts[:CEILING_SAMPLE], args.ceiling_seconds)
    work = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    common = {
        "HF_HUB_OFFLINE": "1",
        "MODELSERVE_AUTH__ENABLED": "false",
        "MODELSERVE_JOBS__LEASE_S": "120",
        **dict(s.split("=", 1) for s in args.ms_env),
    }
    report.settings = dict(common)
    port = 18000 + os.getpid() % 1000
    base = f"http://127.0.0.1:{port}"
    env = {**common, "MODELSERVE_DATA_DIR": str(work / "embedded")}
    serve = ["serve", str(EXAMPLE), "--port", str(port), "--log-level", "warning"]
    with started("embedded", serve, env, work) as server, httpx.Client(base_url=base) as client:
        wait_ready(base, server)
        upload_id = upload(client, data)
        print(f"embedded: {args.rows} rows uploaded", file=sys.stderr)
        if not args.skip_latency:
            latency_windows(args, client, base, upload_id, f)
        job = wait_job(client, submit(client, upload_id), ("succeeded", "failed", "cancelled"))
        f["embedded_rows_per_s"] = job_rate(job)
        f["embedded_state"] = job["state"]
        print(f"embedded: {job['state']}, {f['embedded_rows_per_s']:.0f} rows/s", file=sys.stderr)
        embedded = results(client, job["id"])
    after = ceiling(all_texts[:CEILING_SAMPLE], args.ceiling_seconds)
    best = max((before, after), key=lambda c: c["best"]["items_per_s"])
    f["ceiling_before"] = before["best"]["items_per_s"]
    f["ceiling_after"] = after["best"]["items_per_s"]
    f["ceiling_items_per_s"] = statistics.mean([f["ceiling_before"], f["ceiling_after"]])
    f["ceiling_batch"] = best["best"]["batch"]
    f["ceiling_points"] = [before["points"], after["points"]]
    if not args.skip_celery:
        celery_run(args, report, data, embedded, work, common, port + 1)
    return report


def celery_run(
    args: argparse.Namespace,
    report: Report,
    data: bytes,
    embedded: dict[int, list[float]],
    work: Path,
    common: dict[str, str],
    port: int,
) -> None:
    f = report.figures
    queue = f"bench-jobs-{uuid.uuid4().hex[:8]}"
    env = {
        **common,
        "MODELSERVE_DATA_DIR": str(work / "celery"),
        "MODELSERVE_JOBS__RUNNER": "celery",
        "MODELSERVE_JOBS__BROKER_URL": BROKER_URL,
        "MODELSERVE_JOBS__CELERY_QUEUE": queue,
    }
    # Two worker processes share the cores: one torch thread each, not two each.
    worker_env = {**env, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // 2))}
    base = f"http://127.0.0.1:{port}"
    serve = ["serve", str(EXAMPLE), "--port", str(port), "--log-level", "warning"]
    # Info level: the worker says " ready." once it consumes (wait_worker reads it).
    worker = ["worker", str(EXAMPLE), "--concurrency", "2", "--log-level", "info"]
    try:
        with (
            started("celery-server", serve, env, work) as server,
            httpx.Client(base_url=base) as client,
        ):
            wait_ready(base, server)
            with started("celery-worker", worker, worker_env, work) as running:
                wait_worker(running)
                upload_id = upload(client, data)
                job = wait_job(
                    client, submit(client, upload_id), ("succeeded", "failed", "cancelled")
                )
            f["celery_rows_per_s"] = job_rate(job)
            f["celery_state"] = job["state"]
            print(f"celery: {job['state']}, {f['celery_rows_per_s']:.0f} rows/s", file=sys.stderr)
            got = results(client, job["id"])
    finally:
        _delete_queue(queue)
    matching = 0
    worst = 0.0
    for row, vector in embedded.items():
        other = got.get(row)
        if other is None or len(other) != len(vector):
            continue
        diff = max(abs(a - b) for a, b in zip(vector, other, strict=True))
        worst = max(worst, diff)
        matching += diff <= TOLERANCE
    f["rows_matching"] = matching
    f["max_abs_diff"] = worst


def _delete_queue(queue: str) -> None:
    with contextlib.suppress(Exception):
        from kombu import Connection

        with Connection(BROKER_URL, connect_timeout=5) as connection:
            connection.default_channel.queue_delete(queue)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20.0, help="each latency window")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of latency windows")
    parser.add_argument("--ceiling-seconds", type=float, default=5.0, help="per batch size")
    parser.add_argument("--skip-celery", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument(
        "--ms-env", action="append", default=[], metavar="KEY=VALUE", help="server settings"
    )
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    report = run(args)
    text = report.markdown()
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(report.figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
