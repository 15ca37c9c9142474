"""`modelserve models ...`: the model registry of a running server, over HTTP.

`modelserve models` alone lists what the server serves (as before); the subcommands push
versions, list the registry, move aliases, roll back and split traffic. Exit status as in
`cli/client.py`: 0 on success, 1 when the server said no, 2 when the command line is wrong.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from modelserve.cli.client import (
    DEFAULT_TIMEOUT_S,
    DEFAULT_URL,
    ApiKeyOpt,
    TimeoutOpt,
    UrlOpt,
    json_of,
    models,
    print_json,
    send,
    usage_error,
)

UPLOAD_CHUNK_BYTES = 1024 * 1024
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")]
AliasOpt = Annotated[str, typer.Option("--alias", help="The alias to move.")]

app = typer.Typer(
    help="Models: what a server serves, and its registry (push, promote, rollback, traffic).",
    invoke_without_command=True,
)


@app.callback()
def served(
    ctx: typer.Context,
    url: UrlOpt = DEFAULT_URL,
    as_json: JsonOpt = False,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """List the models a running server serves (or run one of the commands below)."""
    if ctx.invoked_subcommand is None:
        models(url=url, as_json=as_json, api_key=api_key, timeout=timeout)


def _path(*parts: str) -> str:
    return "/v1/registry/" + "/".join(quote(p, safe="") for p in parts)


def _files(root: Path) -> list[tuple[str, Path]]:
    """(path inside the version, local file) for a file or every file under a folder."""
    if root.is_symlink():
        usage_error(f"{root} is a symbolic link; give the real file or folder")
    if root.is_file():
        return [(root.name, root)]
    if not root.is_dir():
        usage_error(f"no such file or folder: {root}")
    found: list[tuple[str, Path]] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        for name in sorted(names):
            local = Path(folder) / name
            if name.startswith("."):
                continue
            if local.is_symlink():
                usage_error(f"{local} is a symbolic link; the registry stores real files only")
            found.append((local.relative_to(root).as_posix(), local))
    if not found:
        usage_error(f"{root} holds no files")
    return found


def _chunks(local: Path, progress: Progress, task: Any) -> Iterator[bytes]:
    with local.open("rb") as handle:
        while chunk := handle.read(UPLOAD_CHUNK_BYTES):
            progress.advance(task, len(chunk))
            yield chunk


def _service_ref(service: str) -> str:
    # A file on this machine is sent as an absolute path: the server imports it from there.
    location, sep, attr = service.rpartition(":") if ":" in service else (service, "", "")
    if location.endswith(".py") and Path(location).is_file():
        return str(Path(location).resolve()) + sep + attr
    return service


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for value in values or []:
        key, sep, item = value.partition("=")
        if not sep or not key:
            usage_error(f"{what} must look like key=value (got {value!r})")
        result[key] = item
    return result


def _split(value: str, what: str) -> dict[str, Any]:
    version, sep, percent = value.rpartition(":")
    try:
        share = float(percent)
    except ValueError:
        share = -1.0
    if not sep or not version or not 0 < share <= 100:
        usage_error(f"{what} must look like VERSION:PERCENT, e.g. 2:10 (got {value!r})")
    return {"version": version, "percent": share}


@app.command()
def push(
    name: Annotated[str, typer.Argument(help="Model name in the registry.")],
    path: Annotated[Path, typer.Argument(help="A file, or a folder of files, to upload.")],
    service: Annotated[
        str, typer.Option(help="The Service class: pkg.module:Class or path/file.py:Class.")
    ],
    version: Annotated[
        str | None, typer.Option(help="Version label (default: the next number).")
    ] = None,
    framework: Annotated[str | None, typer.Option(help="e.g. pytorch, sklearn.")] = None,
    description: Annotated[str, typer.Option(help="What changed in this version.")] = "",
    metric: Annotated[
        list[str] | None, typer.Option(help="NAME=VALUE, e.g. accuracy=0.97 (repeat).")
    ] = None,
    label: Annotated[list[str] | None, typer.Option(help="KEY=VALUE (repeat).")] = None,
    trusted: Annotated[
        bool, typer.Option("--trusted", help="Allow pickle-like files (admins only).")
    ] = False,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """Upload PATH and create a new version of NAME from it."""
    files = _files(path)
    metrics: dict[str, float] = {}
    for key, value in _pairs(metric, "--metric").items():
        try:
            metrics[key] = float(value)
        except ValueError:
            usage_error(f"--metric {key} must be a number (got {value!r})")
    common: dict[str, Any] = {"api_key": api_key, "timeout": timeout}
    _ensure_model(url, name, **common)
    refs: list[dict[str, str]] = []
    total = sum(local.stat().st_size for _, local in files)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(f"uploading {len(files)} file(s)", total=total)
        for relative, local in files:
            progress.update(task, description=f"uploading {relative}")
            response = send(
                "POST",
                url,
                "/v1/registry/uploads?path=" + quote(relative, safe=""),
                content=_chunks(local, progress, task),
                headers={
                    "content-type": "application/octet-stream",
                    "content-length": str(local.stat().st_size),
                },
                **common,
            )
            stored = json_of(response)["files"][0]
            refs.append({"path": stored["path"], "sha256": stored["sha256"]})
        progress.update(task, description="uploaded")
    body: dict[str, Any] = {
        "service": _service_ref(service),
        "files": refs,
        "description": description,
        "metrics": metrics,
        "labels": _pairs(label, "--label"),
        "trusted": trusted,
    }
    if version is not None:
        body["version"] = version
    if framework is not None:
        body["framework"] = framework
    path_ = _path("models", name, "versions")
    created = json_of(_send_json("POST", url, path_, body, api_key, timeout))
    typer.echo(f"{name}: created version {created['version']} ({len(refs)} file(s))")


def _ensure_model(url: str, name: str, *, api_key: str | None, timeout: float) -> None:
    # 409: the model is registered already, which is what we want.
    _send_json("POST", url, _path("models"), {"name": name}, api_key, timeout, allow=(409,))


def _send_json(
    method: str,
    url: str,
    path: str,
    body: Any,
    api_key: str | None,
    timeout: float,
    allow: tuple[int, ...] = (),
) -> httpx.Response:
    return send(
        method,
        url,
        path,
        api_key=api_key,
        timeout=timeout,
        content=json.dumps(body).encode("utf-8"),
        headers={"content-type": "application/json"},
        allow=allow,
    )


@app.command("list")
def list_models(
    url: UrlOpt = DEFAULT_URL,
    as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option(help="At most this many models.")] = 100,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """List the registry's models with their aliases and traffic."""
    data = json_of(
        send("GET", url, f"/v1/registry/models?limit={limit}", api_key=api_key, timeout=timeout)
    )
    if as_json:
        print_json(data)
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "VERSIONS", "LATEST", "ALIASES", "TRAFFIC"):
        table.add_column(column, overflow="fold")
    for model in data.get("data", []):
        aliases = ", ".join(f"{a}={v}" for a, v in sorted(model["aliases"].items()))
        table.add_row(
            model["name"],
            str(model["version_count"]),
            str(model["latest_version"] or "-"),
            aliases or "-",
            _describe_traffic(model.get("traffic")),
        )
    Console(highlight=False).print(table)


def _describe_traffic(traffic: dict[str, Any] | None) -> str:
    if not traffic:
        return "-"
    parts = [f"canary {c['version']}:{c['percent']:g}%" for c in traffic.get("canary", [])]
    if traffic.get("sticky") and parts:
        parts.append("sticky")
    shadow = traffic.get("shadow")
    if shadow:
        parts.append(f"shadow {shadow['version']}:{shadow['percent']:g}%")
    return ", ".join(parts) or "-"


@app.command()
def versions(
    name: Annotated[str, typer.Argument(help="Model name in the registry.")],
    url: UrlOpt = DEFAULT_URL,
    as_json: JsonOpt = False,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """List a model's versions, newest first."""
    data = json_of(
        send("GET", url, _path("models", name, "versions"), api_key=api_key, timeout=timeout)
    )
    if as_json:
        print_json(data)
        return
    table = Table(box=None, header_style="bold")
    for column in ("VERSION", "ALIASES", "FILES", "SERVICE", "CREATED"):
        table.add_column(column, overflow="fold")
    for item in data.get("data", []):
        table.add_row(
            item["version"],
            ", ".join(item["aliases"]) or "-",
            str(len(item["files"])),
            item["service"],
            item["created_at"][:19],
        )
    Console(highlight=False).print(table)


@app.command()
def promote(
    name: Annotated[str, typer.Argument(help="Model name in the registry.")],
    version: Annotated[str, typer.Argument(help="The version the alias should point at.")],
    alias: AliasOpt = "production",
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """Point ALIAS at VERSION; for the served alias the server loads and warms it first."""
    path = _path("models", name, "aliases", alias)
    moved = json_of(_send_json("PUT", url, path, {"version": version}, api_key, timeout))
    was = f" (was {moved['previous_version']})" if moved.get("previous_version") else ""
    typer.echo(f"{name}: {alias} -> {moved['version']}{was}")


@app.command()
def rollback(
    name: Annotated[str, typer.Argument(help="Model name in the registry.")],
    alias: AliasOpt = "production",
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """Move ALIAS back to the version it pointed at before its last move."""
    path = _path("models", name, "rollback")
    moved = json_of(_send_json("POST", url, path, {"alias": alias}, api_key, timeout))
    was = moved["previous_version"]
    typer.echo(f"{name}: {alias} -> {moved['version']} (rolled back from {was})")


@app.command()
def traffic(
    name: Annotated[str, typer.Argument(help="Model name in the registry.")],
    canary: Annotated[
        list[str] | None, typer.Option(help="VERSION:PERCENT of unpinned requests (repeat).")
    ] = None,
    sticky: Annotated[
        bool, typer.Option("--sticky", help="Keep each API key on one side of the split.")
    ] = False,
    shadow: Annotated[
        str | None, typer.Option(help="VERSION:PERCENT of requests mirrored to VERSION.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove canaries and shadow.")] = False,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """Split NAME's traffic: canaries next to the served version, and a shadow."""
    path = _path("models", name, "traffic")
    if clear:
        if canary or shadow or sticky:
            usage_error("--clear takes no other traffic option")
        send("DELETE", url, path, api_key=api_key, timeout=timeout)
        typer.echo(f"{name}: all traffic to the served version")
        return
    if not canary and not shadow:
        usage_error("give --canary VERSION:PERCENT, --shadow VERSION:PERCENT or --clear")
    body: dict[str, Any] = {
        "canary": [_split(c, "--canary") for c in canary or []],
        "sticky": sticky,
        "shadow": _split(shadow, "--shadow") if shadow else None,
    }
    result = json_of(_send_json("PUT", url, path, body, api_key, timeout))
    typer.echo(f"{name}: primary {result['primary']}; {_describe_traffic(result)}")
