"""`modelserve jobs schedules ...`: scheduled jobs on a running server, over HTTP.

`create` takes the job as `jobs submit` does: a FILE (uploaded once, and read at every tick
as it was then), an `--upload` id, or a `--path` under the server's input folder (read anew at
each tick). Exit status as in `cli/client.py`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

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

EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
FORMATS = ("jsonl", "csv", "parquet")

ScheduleArg = Annotated[
    str, typer.Argument(metavar="SCHEDULE_ID", help="A schedule id, as `schedules list` shows.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")]

app = typer.Typer(help="Scheduled jobs: run a model over a file on a cron schedule.")


def _path(*parts: str) -> str:
    return "/v1/schedules" + "".join("/" + quote(p, safe="") for p in parts)


def _describe(schedule: dict[str, Any]) -> str:
    when = schedule["next_run_at"] or "paused"
    return f"schedule {schedule['id']} ({schedule['name']}): {schedule['state']}, next {when}"


@app.command("list")
def list_schedules(
    as_json: JsonOpt = False,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """List your schedules."""
    data = json_of(send("GET", url, _path() + "?limit=100", api_key=api_key, timeout=timeout))
    if as_json:
        print_json(data)
        return
    table = Table(box=None, header_style="bold")
    for column in ("ID", "NAME", "CRON", "TZ", "MODEL", "STATE", "NEXT RUN", "LAST JOB"):
        table.add_column(column, overflow="fold")
    for item in data.get("data", []):
        table.add_row(
            item["id"],
            item["name"],
            item["cron"],
            item["timezone"],
            item["job"]["model"],
            item["state"],
            (item["next_run_at"] or "-")[:19],
            item["last_job_id"] or (f"error: {item['last_error']}" if item["last_error"] else "-"),
        )
    Console(highlight=False).print(table)


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="A label for the schedule.")],
    model: Annotated[str, typer.Argument(help="A served model's name.")],
    file: Annotated[
        Path | None,
        typer.Argument(help="Rows to run over (.jsonl, .csv, .parquet), uploaded now."),
    ] = None,
    cron: Annotated[
        str, typer.Option(help="Five cron fields, e.g. '0 3 * * *' (03:00 every day).")
    ] = "0 3 * * *",
    timezone: Annotated[str, typer.Option(help="IANA time zone of the fields.")] = "UTC",
    upload: Annotated[
        str | None, typer.Option(help="A completed upload's id, instead of FILE.")
    ] = None,
    path: Annotated[
        str | None,
        typer.Option(help="A file under the server's input folder, read at each tick."),
    ] = None,
    version: Annotated[str | None, typer.Option(help="A loaded version.")] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="jsonl, csv or parquet (default: extension).")
    ] = None,
    output_format: Annotated[str | None, typer.Option(help="Results format.")] = None,
    chunk_size: Annotated[int | None, typer.Option(help="Rows per chunk.", min=1)] = None,
    priority: Annotated[int, typer.Option(help="Higher runs first (-100..100).")] = 0,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """Run MODEL over FILE (or --upload, or --path) at every time --cron names."""
    sources = [s for s in (file, upload, path) if s is not None]
    if len(sources) != 1:
        usage_error("give exactly one of FILE, --upload and --path")
    named = file.name if file is not None else (path or "")
    chosen = fmt or EXTENSIONS.get(Path(named).suffix.lower())
    if chosen not in FORMATS:
        usage_error("cannot tell the input's format: give --format jsonl|csv|parquet")
    if file is not None:
        from modelserve.cli.jobs import upload_file

        if not file.is_file():
            usage_error(f"no such file: {file}")
        upload = upload_file(file, url=url, api_key=api_key, timeout=timeout)
    source = {"upload_id": upload} if upload is not None else {"path": path}
    job: dict[str, Any] = {
        "model": model,
        "version": version,
        "input": source,
        "format": chosen,
        "output_format": output_format,
        "chunk_size": chunk_size,
        "priority": priority,
    }
    body = {
        "name": name,
        "cron": cron,
        "timezone": timezone,
        "job": {k: v for k, v in job.items() if v is not None},
    }
    made = json_of(
        send(
            "POST",
            url,
            _path(),
            api_key=api_key,
            timeout=timeout,
            content=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
    )
    typer.echo(_describe(made))


@app.command()
def show(
    schedule_id: ScheduleArg,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """Print one schedule as JSON."""
    print_json(json_of(send("GET", url, _path(schedule_id), api_key=api_key, timeout=timeout)))


@app.command()
def pause(
    schedule_id: ScheduleArg,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """Stop running a schedule until it is resumed."""
    path = _path(schedule_id, "pause")
    typer.echo(_describe(json_of(send("POST", url, path, api_key=api_key, timeout=timeout))))


@app.command()
def resume(
    schedule_id: ScheduleArg,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """Run a paused schedule again, from its next tick."""
    path = _path(schedule_id, "resume")
    typer.echo(_describe(json_of(send("POST", url, path, api_key=api_key, timeout=timeout))))


@app.command()
def delete(
    schedule_id: ScheduleArg,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """Delete a schedule (the jobs it started stay)."""
    send("DELETE", url, _path(schedule_id), api_key=api_key, timeout=timeout)
    typer.echo(f"schedule {schedule_id}: deleted")
