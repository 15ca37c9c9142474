"""Client commands that talk to a running server over HTTP: `predict` and `models`.

Exit status: 0 on a 2xx answer, 1 when the server answered with an error or could not be
reached, 2 when the command line itself is wrong (unreadable input file, JSON that does not parse).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.table import Table

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 60.0
EXIT_FAILED = 1
EXIT_USAGE = 2

UrlOpt = Annotated[
    str, typer.Option("--url", envvar="MODELSERVE_URL", help="Base URL of the modelserve server.")
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="MODELSERVE_API_KEY",
        help="Sent as `Authorization: Bearer <key>`.",
        show_default=False,
    ),
]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for the server's answer.")
]


def predict(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Model name, as listed by `modelserve models`.")
    ],
    payload: Annotated[
        str,
        typer.Argument(
            metavar="JSON",
            help="Input as a JSON string, @path/to/file.json, or - to read standard input.",
        ),
    ],
    url: UrlOpt = DEFAULT_URL,
    batch: Annotated[
        bool,
        typer.Option(
            "--batch",
            help='Use /predict/batch; a JSON list is sent as {"inputs": [...]}.',
        ),
    ] = False,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """Send one input (or a batch) to a model and print its answer as JSON."""
    body = read_payload(payload)
    if batch:
        body = as_batch(body)
    path = f"/v1/models/{quote(name, safe='')}/predict" + ("/batch" if batch else "")
    response = send(
        "POST",
        url,
        path,
        api_key=api_key,
        timeout=timeout,
        content=body,
        headers={"content-type": "application/json"},
    )
    print_json(json_of(response))


def models(
    url: UrlOpt = DEFAULT_URL,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")] = False,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
) -> None:
    """List the models a running server serves, with their status and batching."""
    response = send("GET", url, "/v1/models", api_key=api_key, timeout=timeout)
    data = json_of(response)
    if as_json:
        print_json(data)
        return
    listed = data.get("data", []) if isinstance(data, dict) else []
    Console(highlight=False).print(models_table(listed))


def read_payload(payload: str) -> bytes:
    """The request body: the JSON text itself, `@file`, or `-` for stdin; checked to parse."""
    if payload == "-":
        body = typer.get_binary_stream("stdin").read()
    elif payload.startswith("@"):
        try:
            body = Path(payload[1:]).read_bytes()
        except OSError as exc:
            usage_error(f"cannot read {payload[1:]}: {exc.strerror or exc}")
    else:
        body = payload.encode("utf-8")
    try:
        json.loads(body)
    except ValueError as exc:
        usage_error(f"input is not valid JSON: {exc}")
    return body


def as_batch(body: bytes) -> bytes:
    """Wrap a bare JSON list as `{"inputs": [...]}`; anything else is sent as given."""
    data = json.loads(body)
    if isinstance(data, list):
        return json.dumps({"inputs": data}).encode("utf-8")
    return body


def send(
    method: str,
    url: str,
    path: str,
    *,
    api_key: str | None,
    timeout: float,
    content: bytes | Iterator[bytes] | None = None,
    headers: dict[str, str] | None = None,
    allow: Collection[int] = (),
) -> httpx.Response:
    """Make one request; exit with a clear message unless the answer is 2xx (or in `allow`)."""
    all_headers = {"accept": "application/json", **(headers or {})}
    if api_key:
        all_headers["authorization"] = f"Bearer {api_key}"
    base = url.rstrip("/")
    try:
        response = httpx.request(
            method, base + path, content=content, headers=all_headers, timeout=timeout
        )
    except httpx.ConnectError as exc:
        failed(f"cannot connect to {base} ({exc}); is `modelserve serve` running there?")
    except httpx.TimeoutException:
        failed(f"no answer from {base} within {timeout:g}s (raise it with --timeout)")
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        usage_error(f"bad --url {url!r}: {exc}")
    except httpx.HTTPError as exc:
        failed(f"request to {base} failed: {exc}")
    if response.is_error and response.status_code not in allow:
        report_http_error(response)
    return response


def json_of(response: httpx.Response) -> Any:
    """The decoded JSON answer; a non-JSON answer means `--url` points elsewhere (exit 1)."""
    try:
        return response.json()
    except ValueError:
        failed(f"{response.url} did not answer with JSON; is --url a modelserve server?")


def report_http_error(response: httpx.Response) -> NoReturn:
    """Print the error body's code and message (and details) on stderr, then exit 1."""
    try:
        error = response.json()["error"]
        code, message = error["code"], error["message"]
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:500] or response.reason_phrase
        failed(f"HTTP {response.status_code}: {text}")
    lines = [f"HTTP {response.status_code} {code}: {message}"]
    lines.extend(describe_details(error.get("details")))
    if error.get("request_id"):
        lines.append(f"request id: {error['request_id']}")
    failed("\n".join(lines))


def describe_details(details: Any) -> list[str]:
    """Validation errors as `  at inputs.1.text: message` lines; other details as JSON."""
    if details is None:
        return []
    if isinstance(details, list) and all(isinstance(d, dict) and "msg" in d for d in details):
        lines = []
        for detail in details:
            loc = ".".join(str(part) for part in detail.get("loc") or []) or "(body)"
            lines.append(f"  at {loc}: {detail['msg']}")
        return lines
    return ["  " + json.dumps(details, ensure_ascii=False)]


def models_table(models: list[dict[str, Any]]) -> Table:
    """The `modelserve models` table: one row per model."""
    table = Table(box=None, header_style="bold")
    for column in ("name", "version", "status", "batching", "reason"):
        table.add_column(column.upper(), overflow="fold")
    colours = {"ready": "green", "loading": "yellow", "failed": "red", "stopped": "dim"}
    for model in models:
        status = str(model.get("status", "?"))
        table.add_row(
            str(model.get("name", "?")),
            str(model.get("version", "?")),
            f"[{colours.get(status, 'default')}]{status}[/]",
            describe_batching(model.get("batching") or {}),
            str(model.get("reason") or ""),
        )
    return table


def describe_batching(batching: dict[str, Any]) -> str:
    """`up to 32 / 2 ms` for batching services, `off` for one-at-a-time ones."""
    size = batching.get("max_batch_size", 1)
    if not isinstance(size, int) or size <= 1:
        return "off"
    return f"up to {size} / {batching.get('max_wait_ms', 0):g} ms"


def print_json(data: Any) -> None:
    """Pretty JSON on stdout, non-ASCII kept readable."""
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def failed(message: str) -> NoReturn:
    """The server said no or could not be reached: message on stderr, exit 1."""
    typer.echo(f"modelserve: error: {message}", err=True)
    raise typer.Exit(EXIT_FAILED)


def usage_error(message: str) -> NoReturn:
    """The command line cannot work as given: message on stderr, exit 2."""
    typer.echo(f"modelserve: error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)
