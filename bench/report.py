"""Results files: `<stem>.json` (everything), `<stem>.md` (tables, targets) and `<stem>.png`.

The targets are the ratios issue 3 asks for, computed from one run's own rows; a target whose
rows are missing (a server not run, say) is reported as not measured, never as met.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Results = dict[str, Any]


def find_run(
    results: Results, workload: str, server: str, concurrency: int
) -> dict[str, Any] | None:
    """The row of one server at one concurrency, if measured."""
    for run in results["runs"]:
        if (run["workload"], run["server"], run["concurrency"]) == (workload, server, concurrency):
            return run
    return None


def _target(
    tid: str, what: str, value: float | None, goal: str, met: bool | None
) -> dict[str, Any]:
    return {"id": tid, "what": what, "value": value, "goal": goal, "met": met}


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def evaluate_targets(results: Results) -> list[dict[str, Any]]:
    """Issue 3's CPU targets as ratios within this run."""
    out: list[dict[str, Any]] = []

    def rate(w: str, s: str, c: int) -> float | None:
        run = find_run(results, w, s, c)
        return None if run is None else run["items_per_s"]

    def p(w: str, s: str, c: int, q: str) -> float | None:
        run = find_run(results, w, s, c)
        return None if run is None else run["latency_ms"].get(q)

    ms = rate("w1", "modelserve", 64)
    for peer, goal in (("raw-asgi", 0.6), ("fastapi", 3.0), ("litserve", 20.0)):
        r = _ratio(ms, rate("w1", peer, 64))
        out.append(
            _target(
                f"w1-c64-vs-{peer}",
                f"W1 c=64 modelserve req/s / {peer}",
                r,
                f">= {goal}x",
                None if r is None else r >= goal,
            )
        )
    p50 = p("w1", "modelserve", 1, "p50")
    out.append(
        _target(
            "w1-c1-p50",
            "W1 c=1 modelserve p50 (ms)",
            p50,
            "<= 0.25 ms",
            None if p50 is None else p50 <= 0.25,
        )
    )
    best = results.get("ceilings", {}).get("w2", {}).get("best", {}).get("items_per_s")
    r = _ratio(rate("w2", "modelserve", 64), best)
    out.append(
        _target(
            "w2-c64-vs-model",
            "W2 c=64 modelserve items/s / model best batch",
            r,
            ">= 0.9x",
            None if r is None else r >= 0.9,
        )
    )
    r = _ratio(p("w2", "modelserve", 64, "p99"), p("w2", "litserve", 64, "p99"))
    out.append(
        _target(
            "w2-c64-p99-vs-litserve",
            "W2 c=64 modelserve p99 / LitServe p99",
            r,
            "<= 0.5x",
            None if r is None else r <= 0.5,
        )
    )
    for workload in ("w1", "w2"):
        rows = sorted(
            (
                x
                for x in results["runs"]
                if x["workload"] == workload and x["server"] == "modelserve"
            ),
            key=lambda x: x["concurrency"],
        )
        if len(rows) < 2:
            continue
        first, last = rows[0], rows[-1]
        peak = max(x["items_per_s"] for x in rows)
        r = _ratio(last["items_per_s"], peak)
        out.append(
            _target(
                f"{workload}-growth-throughput",
                f"{workload.upper()} modelserve items/s at c={last['concurrency']} / peak",
                r,
                ">= 0.9x (does not fall)",
                None if r is None else r >= 0.9,
            )
        )
        r = _ratio(last["peak_rss_mb"], first["peak_rss_mb"])
        out.append(
            _target(
                f"{workload}-growth-rss",
                f"{workload.upper()} modelserve peak RSS"
                f" c={last['concurrency']} / c={first['concurrency']}",
                r,
                "bounded (<= 2x)",
                None if r is None else r <= 2.0,
            )
        )
        timeouts = sum(x["errors"]["timeout"] + x["errors"]["read"] for x in rows)
        out.append(
            _target(
                f"{workload}-growth-no-timeouts",
                f"{workload.upper()} modelserve socket timeouts/read errors, all c",
                float(timeouts),
                "0 (overload is shed with 503s)",
                timeouts == 0,
            )
        )
    return out


def unused_stem(out_dir: Path, stem: str) -> str:
    """`stem`, or `stem-2`, `stem-3`, ... when a run of the same day and host is already there
    (a second run must not overwrite the figures the docs quote from the first)."""
    candidate, n = stem, 1
    while any((out_dir / f"{candidate}{ext}").exists() for ext in (".json", ".md")):
        n += 1
        candidate = f"{stem}-{n}"
    return candidate


def write_all(results: Results, out_dir: Path, stem: str, *, plot: bool = True) -> dict[str, Path]:
    """Write the JSON, the Markdown and (when matplotlib is there) the PNG; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md"}
    png = out_dir / f"{stem}.png"
    if plot and write_plot(results, png):
        paths["png"] = png
        results["plot"] = png.name
    paths["json"].write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    paths["md"].write_text(markdown(results))
    return paths


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def markdown(results: Results) -> str:
    """The human-readable report."""
    m = results["machine"]
    s = results["settings"]
    lines = [
        f"# Benchmark {results['started_at']} on {results['host']}",
        "",
        f"Command: `{s['command']}`  ",
        f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gb']:.0f} GiB,"
        f" Python {m['python']}; load average at start {m['load_avg_start']},"
        f" at end {m.get('load_avg_end', '-')}.  ",
        f"Load: {s['driver_used']} with {s['wrk_threads']} thread(s) on the same machine, "
        f"{s['duration_s']} s per point after {s['warmup_s']} s warm-up,"
        f" timeout {s['timeout_s']} s, "
        "closed loop (each connection sends its next request when the last answer arrives).",
        "",
    ]
    for note in results.get("notes", []):
        lines.append(f"> {note}")
    if results.get("notes"):
        lines.append("")
    for workload in s["workloads"]:
        lines += _workload_section(results, workload)
    targets = results.get("targets", [])
    if targets:
        lines += [
            "## Targets (issue 3, ratios within this run)",
            "",
            "| target | value | goal | met |",
            "|---|---|---|---|",
        ]
        for t in targets:
            met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
            lines.append(f"| {t['what']} | {_fmt(t['value'], 2)} | {t['goal']} | {met} |")
        lines.append("")
    if results.get("plot"):
        lines += [f"![throughput and p99 against concurrency]({results['plot']})", ""]
    return "\n".join(lines) + "\n"


def _workload_section(results: Results, workload: str) -> list[str]:
    title = {
        "w1": "W1: tiny model (4 floats -> 1 float), one item per request",
        "w2": "W2: all-MiniLM-L6-v2, one short sentence per request",
    }.get(workload, workload)
    lines = [f"## {title}", ""]
    ceiling = results.get("ceilings", {}).get(workload)
    if ceiling:
        pts = ", ".join(f"b{p['batch']}: {_fmt(p['items_per_s'])}" for p in ceiling["points"])
        best = ceiling["best"]
        lines += [
            f"Model alone in a loop (items/s): {pts}."
            f" Best: {_fmt(best['items_per_s'])} at batch {best['batch']}.",
            "",
        ]
    lines += [
        "| server | c | req/s | items/s | p50 ms | p90 ms | p99 ms | errors | shed 503"
        " | peak RSS MB | CPU ms/req | avg batch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        if run["workload"] != workload:
            continue
        lat = run["latency_ms"]
        e = run["errors"]
        errors = (
            e["non_2xx"] - run["shed_503"] + e["connect"] + e["read"] + e["write"] + e["timeout"]
        )
        lines.append(
            f"| {run['server']} | {run['concurrency']} | {_fmt(run['req_per_s'])}"
            f" | {_fmt(run['items_per_s'])} "
            f"| {_fmt(lat.get('p50'), 2)} | {_fmt(lat.get('p90'), 2)} | {_fmt(lat.get('p99'), 2)} "
            f"| {errors} | {_fmt(100 * run['shed_rate'])}% | {_fmt(run['peak_rss_mb'])} "
            f"| {_fmt(None if run['cpu_s_per_req'] is None else run['cpu_s_per_req'] * 1000, 3)} "
            f"| {_fmt(run.get('server_stats', {}).get('avg_batch'))} |"
        )
    lines.append("")
    servers = results.get("servers", {}).get(workload, {})
    if servers:
        lines += ["Server settings:", ""]
        for name, info in servers.items():
            status = (
                f"failed: {info['error']}"
                if info.get("error")
                else f"ready in {_fmt(info.get('startup_s'))} s"
            )
            version = results.get("versions", {}).get(name) or "?"
            lines.append(
                f"- **{name}** {version}: {json.dumps(info.get('settings', {}))}; {status}"
            )
        lines.append("")
    return lines


def write_plot(results: Results, path: Path) -> bool:
    """Throughput and p99 against concurrency, one line per server, one row per workload."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        results.setdefault("notes", []).append(
            "No plot: matplotlib is not installed (pip install -e '.[bench]')."
        )
        return False
    workloads = [
        w
        for w in results["settings"]["workloads"]
        if any(r["workload"] == w for r in results["runs"])
    ]
    if not workloads:
        return False
    fig, axes = plt.subplots(len(workloads), 2, figsize=(11, 4 * len(workloads)), squeeze=False)
    for row, workload in enumerate(workloads):
        runs = [r for r in results["runs"] if r["workload"] == workload]
        levels = sorted({r["concurrency"] for r in runs})
        for server in dict.fromkeys(r["server"] for r in runs):
            pts = sorted((r for r in runs if r["server"] == server), key=lambda r: r["concurrency"])
            cs = [r["concurrency"] for r in pts]
            axes[row][0].plot(cs, [r["items_per_s"] for r in pts], marker="o", label=server)
            axes[row][1].plot(
                cs,
                [r["latency_ms"].get("p99", float("nan")) for r in pts],
                marker="o",
                label=server,
            )
        best = results.get("ceilings", {}).get(workload, {}).get("best")
        if best and workload != "w1":
            axes[row][0].axhline(
                best["items_per_s"], color="grey", linestyle="--", label="model alone (best batch)"
            )
        for col, ylabel in ((0, "items/s"), (1, "p99 latency (ms)")):
            ax = axes[row][col]
            ax.set_xscale("log", base=2)
            ax.set_xticks(levels, [str(c) for c in levels])
            ax.set_yscale("log")
            ax.set_xlabel("concurrent connections")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{workload.upper()}: {ylabel}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(f"{results['host']} {results['started_at']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
