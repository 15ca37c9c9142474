"""`modelserve stats NAME`: a model's traffic, latency, errors and drift, in the terminal.

Reads `GET /v1/models/{name}/stats?window=...` from a running server (the data come from the
sampled prediction log) and renders it with rich; `--json` prints the raw answer.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from modelserve.cli.client import (
    DEFAULT_TIMEOUT_S,
    DEFAULT_URL,
    ApiKeyOpt,
    TimeoutOpt,
    UrlOpt,
    json_of,
    print_json,
    send,
    usage_error,
)
from modelserve.errors import InvalidInputError
from modelserve.observability.stats import parse_window

LEVEL_STYLES = {"none": "green", "moderate": "yellow", "major": "bold red", "unknown": "dim"}
MAX_DRIFT_ROWS = 20


def stats(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Model name.")],
    window: Annotated[
        str,
        typer.Option(
            "--window",
            help="How far back: a number and s, m, h or d, from 1m to 30d (e.g. 15m, 1h, 7d).",
        ),
    ] = "1h",
    url: UrlOpt = DEFAULT_URL,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")] = False,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """Show a model's throughput, latency percentiles, error rates and drift."""
    # The server's own rule, checked here too: a bad window is a usage error (exit 2) said
    # before anything is sent, not a 422 after a round trip.
    try:
        parse_window(window)
    except InvalidInputError as exc:
        usage_error(f"--window {window}: {exc.message}")
    path = f"/v1/models/{quote(name, safe='')}/stats?window={quote(window, safe='')}"
    data = json_of(send("GET", url, path, api_key=api_key, timeout=timeout))
    if as_json:
        print_json(data)
        return
    Console(highlight=False).print(render(data))


def _number(value: Any, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def versions_table(versions: list[dict[str, Any]]) -> Table:
    """One row per version: traffic, latency and errors."""
    table = Table(title="Traffic by version", box=None, header_style="bold", title_justify="left")
    for column in ("version", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors", "5xx"):
        table.add_column(column, justify="left" if column == "version" else "right")
    for v in versions:
        latency = v.get("latency") or {}
        table.add_row(
            str(v.get("version")),
            _number(v.get("requests"), "{:.0f}"),
            _number(v.get("throughput_rps"), "{:.3f}"),
            _number(latency.get("p50_ms")),
            _number(latency.get("p90_ms")),
            _number(latency.get("p99_ms")),
            _number(v.get("error_rate"), "{:.1%}"),
            _number(v.get("server_error_rate"), "{:.1%}"),
        )
    return table


def drift_table(drift: dict[str, Any]) -> Table:
    """The worst-drifting numeric fields."""
    table = Table(
        title=f"Drift vs the previous window (overall: {drift.get('level', 'unknown')})",
        box=None,
        header_style="bold",
        title_justify="left",
    )
    for column in ("field", "PSI", "level", "mean ref -> now", "shift (sd)", "n ref/now"):
        table.add_column(column, justify="left" if column in ("field", "level") else "right")
    for field in (drift.get("fields") or [])[:MAX_DRIFT_ROWS]:
        level = str(field.get("level", "unknown"))
        table.add_row(
            str(field.get("field")),
            _number(field.get("psi"), "{:.3f}"),
            Text(level, style=LEVEL_STYLES.get(level, "default")),
            f"{_number(field.get('reference_mean'), '{:.4g}')} -> "
            f"{_number(field.get('current_mean'), '{:.4g}')}",
            _number(field.get("mean_shift"), "{:+.2f}"),
            f"{field.get('reference_count', 0)}/{field.get('current_count', 0)}",
        )
    return table


def render(data: dict[str, Any]) -> Group:
    """Everything `modelserve stats` prints."""
    header = Text.assemble(
        (str(data.get("model")), "bold"),
        f"  window {data.get('window')}  ({data.get('start')} .. {data.get('end')})  ",
        f"sample rate {_number(data.get('sample_rate'), '{:.0%}')}",
    )
    parts: list[Any] = [header]
    if data.get("note"):
        parts.append(Text(str(data["note"]), style="yellow"))
    versions = data.get("versions") or []
    parts.append(versions_table(versions) if versions else Text("no sampled requests in window"))
    drift = data.get("drift") or {}
    if drift.get("fields"):
        parts.append(drift_table(drift))
        if drift.get("truncated"):
            parts.append(Text("(more numeric fields exist than are analysed)", style="dim"))
    return Group(*parts)
