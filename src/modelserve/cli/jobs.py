"""`modelserve jobs ...`: batch jobs on a running server, over HTTP.

`submit` uploads a file in parts (resuming after a broken connection from where the server
says the upload ends), submits the job and, with `--wait`, shows its progress until it ends.
Exit status as in `cli/client.py`: 0 on success, 1 when the server said no (or a waited-for
job did not succeed), 2 when the command line is wrong.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from modelserve.cli.client import (
    DEFAULT_TIMEOUT_S,
    DEFAULT_URL,
    ApiKeyOpt,
    TimeoutOpt,
    UrlOpt,
    failed,
    json_of,
    print_json,
    report_http_error,
    send,
    usage_error,
)
from modelserve.cli.schedules import app as schedules_app

# Parts are ordinary request bodies; the server says its own cap, this is ours.
PART_BYTES = 4 * 1024 * 1024
PART_TRIES = 4
WATCH_INTERVAL_S = 0.5
HASH_PIECE = 1024 * 1024
FORMATS = ("jsonl", "csv", "parquet")
EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
FINISHED = ("succeeded", "failed", "cancelled")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")]
JobArg = Annotated[str, typer.Argument(metavar="JOB_ID", help="A job id, as `jobs list` shows.")]

app = typer.Typer(help="Batch jobs: run a model over a whole file (submit, watch, results).")
app.add_typer(schedules_app, name="schedules")


def _path(*parts: str) -> str:
    return "/v1/jobs" + "".join("/" + quote(p, safe="") for p in parts)


def _upload_path(*parts: str) -> str:
    return "/v1/uploads" + "".join("/" + quote(p, safe="") for p in parts)


def _check_format(value: str | None, what: str) -> str | None:
    if value is not None and value not in FORMATS:
        usage_error(f"{what} must be one of {', '.join(FORMATS)} (got {value!r})")
    return value


def _headers(api_key: str | None, **extra: str) -> dict[str, str]:
    headers = {"accept": "application/json", **extra}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers


def _digest(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        while piece := handle.read(HASH_PIECE):
            digest.update(piece)
    return digest.hexdigest()


def _put_part(
    client: httpx.Client, upload_id: str, offset: int, data: bytes, api_key: str | None
) -> int:
    """Send one part; the upload's size afterwards. After a broken connection or a 5xx the
    server is asked where the upload ends and that is where the next part starts."""
    path = _upload_path(upload_id)
    for attempt in range(PART_TRIES):
        try:
            response = client.put(
                path,
                params={"offset": offset},
                content=data,
                headers=_headers(api_key, **{"content-type": "application/octet-stream"}),
            )
        except httpx.TransportError:
            response = None
        if response is not None and response.status_code < 500:
            if response.status_code == 409:  # the server has a different end: go on from it
                details = (response.json().get("error") or {}).get("details") or {}
                if isinstance(details.get("size"), int):
                    return int(details["size"])
            if response.is_error:
                report_http_error(response)
            return int(response.json()["size"])
        time.sleep(min(2.0, 0.25 * 2**attempt))
        try:
            state = client.get(path, headers=_headers(api_key))
            if state.status_code == 200 and state.json()["size"] != offset:
                return int(state.json()["size"])
        except httpx.TransportError:
            continue
    failed(f"could not send the part at byte {offset} after {PART_TRIES} tries")


def upload_file(file: Path, *, url: str, api_key: str | None, timeout: float) -> str:
    """Upload `file` in parts with a progress bar; the completed upload's id."""
    created = json_of(send("POST", url, _upload_path(), api_key=api_key, timeout=timeout))
    size = file.stat().st_size
    if size > created["max_bytes"]:
        failed(f"{file} is {size} bytes; the server takes uploads up to {created['max_bytes']}")
    part = max(1, min(int(created["max_part_bytes"]), PART_BYTES))
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    base = url.rstrip("/")
    with (
        httpx.Client(base_url=base, timeout=timeout) as client,
        Progress(*columns, console=Console(stderr=True)) as progress,
        file.open("rb") as handle,
    ):
        task = progress.add_task(f"uploading {file.name}", total=size)
        offset = 0
        while offset < size:
            handle.seek(offset)
            offset = _put_part(client, created["id"], offset, handle.read(part), api_key)
            progress.update(task, completed=offset)
    body = json.dumps({"sha256": _digest(file)}).encode()
    send(
        "POST",
        url,
        _upload_path(created["id"], "complete"),
        api_key=api_key,
        timeout=timeout,
        content=body,
        headers={"content-type": "application/json"},
    )
    upload_id: str = created["id"]
    return upload_id


@app.command()
def submit(
    model: Annotated[str, typer.Argument(help="A served model's name.")],
    file: Annotated[Path, typer.Argument(help="The rows: a .jsonl, .csv or .parquet file.")],
    version: Annotated[
        str | None, typer.Option(help="A loaded version (default: the one serving requests).")
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="jsonl, csv or parquet (default: from the extension)."),
    ] = None,
    output_format: Annotated[
        str | None, typer.Option(help="Results format (default: the input's).")
    ] = None,
    chunk_size: Annotated[int | None, typer.Option(help="Rows per chunk.", min=1)] = None,
    priority: Annotated[int, typer.Option(help="Higher runs first (-100..100).")] = 0,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Submitting again with it gives back the same job.")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until the job ends.")] = False,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """Upload FILE and run MODEL over every row of it."""
    if not file.is_file():
        usage_error(f"no such file: {file}")
    chosen = _check_format(fmt, "--format") or EXTENSIONS.get(file.suffix.lower())
    if chosen is None:
        usage_error(f"cannot tell the format of {file.name}: give --format jsonl|csv|parquet")
    _check_format(output_format, "--output-format")
    upload_id = upload_file(file, url=url, api_key=api_key, timeout=timeout)
    body: dict[str, Any] = {
        "model": model,
        "version": version,
        "input": {"upload_id": upload_id},
        "format": chosen,
        "output_format": output_format,
        "chunk_size": chunk_size,
        "priority": priority,
        "idempotency_key": idempotency_key,
    }
    response = send(
        "POST",
        url,
        _path(),
        api_key=api_key,
        timeout=timeout,
        content=json.dumps({k: v for k, v in body.items() if v is not None}).encode(),
        headers={"content-type": "application/json"},
    )
    job = json_of(response)
    again = " (already submitted with this key)" if response.status_code == 200 else ""
    typer.echo(f"job {job['id']}: {job['rows']['total']} rows, {job['state']}{again}")
    if wait:
        _watch(job["id"], url=url, api_key=api_key, timeout=timeout)


def _watch(job_id: str, *, url: str, api_key: str | None, timeout: float) -> None:
    """A progress bar (rows, rate, ETA) until the job ends; exit 1 unless it succeeded."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows  {task.fields[rate]}  ETA {task.fields[eta]}"),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task(job_id[:12], total=None, rate="-", eta="-")
        while True:
            job = json_of(send("GET", url, _path(job_id), api_key=api_key, timeout=timeout))
            rows = job["rows"]
            rate = job.get("rate_rows_per_s")
            eta = job.get("eta_s")
            progress.update(
                task,
                total=rows["total"],
                completed=rows["done"] + rows["failed"],
                description=f"{job_id[:12]} {job['state']}",
                rate=f"{rate:,.0f}/s" if rate else "-",
                eta=f"{eta:,.0f}s" if eta is not None else "-",
            )
            if job["state"] in FINISHED:
                break
            time.sleep(WATCH_INTERVAL_S)
    typer.echo(
        f"job {job_id}: {job['state']}; {rows['done']} rows done, {rows['failed']} failed"
        + (f" (see `modelserve jobs errors {job_id}`)" if rows["failed"] else "")
    )
    if job["state"] != "succeeded":
        raise typer.Exit(1)


@app.command("list")
def list_jobs(
    state: Annotated[
        str | None, typer.Option(help="queued, running, succeeded, failed or cancelled.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many jobs.", min=1)] = 50,
    as_json: JsonOpt = False,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """List your jobs, newest first."""
    query = f"?limit={limit}" + (f"&state={quote(state, safe='')}" if state else "")
    data = json_of(send("GET", url, _path() + query, api_key=api_key, timeout=timeout))
    if as_json:
        print_json(data)
        return
    table = Table(box=None, header_style="bold")
    for column in ("ID", "MODEL", "VERSION", "STATE", "ROWS", "FAILED", "CREATED"):
        table.add_column(column, overflow="fold")
    for job in data.get("data", []):
        rows = job["rows"]
        table.add_row(
            job["id"],
            job["model"],
            job["version"],
            job["state"],
            f"{rows['done'] + rows['failed']}/{rows['total']}",
            str(rows["failed"]),
            job["created_at"][:19],
        )
    Console(highlight=False).print(table)


@app.command()
def show(
    job_id: JobArg,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """Print one job (state, row counts, rate, ETA) as JSON."""
    print_json(json_of(send("GET", url, _path(job_id), api_key=api_key, timeout=timeout)))


@app.command()
def watch(
    job_id: JobArg,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """Show a job's progress until it ends (exit 1 unless it succeeded)."""
    _watch(job_id, url=url, api_key=api_key, timeout=timeout)


@app.command()
def cancel(
    job_id: JobArg,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """Cancel a queued or running job (finished chunks' results stay downloadable)."""
    job = json_of(send("POST", url, _path(job_id, "cancel"), api_key=api_key, timeout=timeout))
    typer.echo(f"job {job_id}: {job['state']}; {job['rows']['done']} rows done")


@app.command()
def retry(
    job_id: JobArg,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """Run a finished job's failed chunks again."""
    job = json_of(send("POST", url, _path(job_id, "retry"), api_key=api_key, timeout=timeout))
    typer.echo(f"job {job_id}: {job['state']}")


@app.command()
def results(
    job_id: JobArg,
    output: Annotated[
        Path | None, typer.Option("--output", help="Write here (default: stdout).")
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="jsonl, csv or parquet (default: the job's)."),
    ] = None,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """Download a job's results, in row order."""
    _check_format(fmt, "--format")
    query = f"?format={fmt}" if fmt else ""
    base = url.rstrip("/")
    try:
        with httpx.stream(
            "GET",
            base + _path(job_id, "results") + query,
            headers=_headers(api_key),
            timeout=timeout,
        ) as response:
            if response.is_error:
                response.read()
                report_http_error(response)
            sink = output.open("wb") if output is not None else sys.stdout.buffer
            try:
                for piece in response.iter_bytes():
                    sink.write(piece)
            finally:
                if output is not None:
                    sink.close()
    except httpx.HTTPError as exc:
        failed(f"download from {base} failed: {exc}")


@app.command()
def errors(
    job_id: JobArg,
    limit: Annotated[int, typer.Option(help="At most this many rows.", min=1)] = 100,
    as_json: JsonOpt = False,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """List a job's failed rows: row number, error code, message."""
    path = _path(job_id, "errors") + f"?limit={limit}"
    data = json_of(send("GET", url, path, api_key=api_key, timeout=timeout))
    if as_json:
        print_json(data)
        return
    table = Table(box=None, header_style="bold")
    for column in ("ROW", "CODE", "MESSAGE"):
        table.add_column(column, overflow="fold")
    for error in data.get("data", []):
        table.add_row(str(error["row"]), error["code"], error["message"])
    Console(highlight=False).print(table)
