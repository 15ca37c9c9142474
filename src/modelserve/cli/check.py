"""`modelserve check my_model.py`: the test kit's checks on every Service of a target.

Loads each service as the server would (its `setup` runs once), then runs
`modelserve.testing.check_service`: its schemas, a sample prediction, batch invariance, that
invalid inputs are refused without running the model, the setup time and the latency per item
at batch 1 and at `max_batch_size`. No server, socket or database. Exits 1 when a check fails,
2 when the target cannot be loaded.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from modelserve.errors import ModelserveError
from modelserve.service.loader import load_target
from modelserve.testing.checks import CHECK_ABS_TOL, CHECK_REL_TOL, CheckReport, check_service

MAX_SHOWN = 200


def check(
    target: Annotated[
        str,
        typer.Argument(
            metavar="TARGET",
            help="file.py, module, file.py:Class or module:Class (as for `serve`).",
        ),
    ],
    rel_tol: Annotated[
        float,
        typer.Option(
            "--rel-tol", help="Relative difference allowed between a batch's floats and alone."
        ),
    ] = CHECK_REL_TOL,
    abs_tol: Annotated[
        float,
        typer.Option(
            "--abs-tol", help="Absolute difference allowed between a batch's floats and alone."
        ),
    ] = CHECK_ABS_TOL,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON.")] = False,
) -> None:
    """Check a model file's services in-process: schemas, a sample prediction, batch invariance,
    refusal of invalid inputs, setup time and latency per item."""
    console = Console(highlight=False, soft_wrap=True)
    try:
        specs = load_target(target)
    except ModelserveError as exc:
        console.print(f"[red]cannot load {target}:[/red] {exc.message}")
        raise typer.Exit(2) from None
    reports: list[CheckReport] = []
    for spec in specs:
        try:
            reports.append(check_service(spec, rel_tol=rel_tol, abs_tol=abs_tol))
        except ModelserveError as exc:
            console.print(f"[red]{spec.name}:[/red] {exc.message}")
            raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps([_as_dict(report) for report in reports], indent=2))
    else:
        for report in reports:
            _print(console, report)
    if not all(report.passed for report in reports):
        raise typer.Exit(1)


def _print(console: Console, report: CheckReport) -> None:
    console.print(f"[bold]{report.name}[/bold] version {report.version}")
    console.print(f"  input   {_fields(report.input_schema)}")
    console.print(f"  output  {_fields(report.output_schema)}")
    console.print(f"  setup   {report.setup_s:.2f} s")
    if report.sample_input is not None:
        console.print(f"  sample  {_short(report.sample_input)}")
        console.print(f"       -> {_short(report.sample_output)}")
    for size, seconds in sorted(report.item_latency_s.items()):
        console.print(f"  latency {seconds * 1000:.3f} ms per item at batch {size}")
    table = Table(show_header=False, box=None, padding=(0, 1, 0, 2))
    for name, problem in report.checks.items():
        mark = "[green]ok[/green]" if problem is None else "[red]FAILED[/red]"
        table.add_row(mark, name, problem or "")
    console.print(table)


def _fields(schema: dict[str, Any]) -> str:
    """`name: type` for each property of a schema, required ones unmarked."""
    required = set(schema.get("required", []))
    parts = []
    for name, node in schema.get("properties", {}).items():
        kind = node.get("type") or ("ref" if "$ref" in node else "any")
        parts.append(f"{name}: {kind}" + ("" if name in required else "?"))
    return ", ".join(parts) or "(no fields)"


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _as_dict(report: CheckReport) -> dict[str, Any]:
    return {
        "name": report.name,
        "version": report.version,
        "passed": report.passed,
        "setup_s": report.setup_s,
        "max_batch_size": report.max_batch_size,
        "item_latency_s": {str(k): v for k, v in report.item_latency_s.items()},
        "sample_input": report.sample_input,
        "sample_output": report.sample_output,
        "checks": report.checks,
        "input_schema": report.input_schema,
        "output_schema": report.output_schema,
    }
