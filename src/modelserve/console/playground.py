"""The playground: a form built from a model's input schema, sent through the real predict.

The prediction is an in-process ASGI request to the app's own `POST /v1/models/{name}/predict`
with the visitor's session token as its bearer credential. So it takes exactly the way an API
request takes (the predict fast path, `predict:<model>` scope check, rate limits, validation,
batching, metrics, access log, prediction log) and answers what the API answers, with no
network hop and no second copy of any of those steps. The latency shown is that request's,
measured around the call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import orjson
from starlette.datastructures import UploadFile
from starlette.responses import Response

from modelserve.console.forms import FormField, body_from_form, form_fields
from modelserve.console.pipeline import Visit
from modelserve.errors import InvalidInputError
from modelserve.http.codec import raw_field
from modelserve.runtime.manager import ModelRuntime

INTERNAL_BASE = "http://modelserve.internal"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the predict endpoint answered."""

    status: int
    body: str
    version: str | None
    latency_ms: float


def _input(visit: Visit) -> tuple[str, list[FormField], str | None]:
    name = str(visit.request.path_params["name"])
    runtime: ModelRuntime = visit.request.app.state.runtime
    spec = runtime.get(name).spec  # 404 for a model this process does not serve
    return name, form_fields(spec.input_schema()), raw_field(spec.input_type)


async def playground(visit: Visit) -> Response:
    """GET /console/models/{name}/playground."""
    name, fields, raw = _input(visit)
    return visit.render(
        "playground.html",
        nav="overview",
        name=name,
        fields=fields,
        raw=raw,
        outcome=None,
        values={},
        error=None,
    )


async def predict(visit: Visit) -> Response:
    """POST /console/models/{name}/playground: send the form, show the answer."""
    name, fields, raw = _input(visit)
    form = visit.form
    values = {f.name: visit.field(f.name) for f in fields}
    outcome: Outcome | None = None
    error: str | None = None
    try:
        if raw is not None:
            upload = form.get(raw) if form is not None else None
            if not isinstance(upload, UploadFile):
                raise InvalidInputError(f"choose a file for {raw}")
            body, media = await upload.read(), "application/octet-stream"
        elif visit.field("mode") == "json":
            body, media = visit.field("json").encode(), "application/json"
        else:
            body, media = body_from_form(fields, values), "application/json"
        outcome = await call_predict(visit, name, body, media)
    except InvalidInputError as exc:
        error = str(exc)
    template = "_prediction.html" if visit.request.headers.get("hx-request") else "playground.html"
    return visit.render(
        template,
        nav="overview",
        name=name,
        fields=fields,
        raw=raw,
        outcome=outcome,
        values=values,
        error=error,
    )


async def call_predict(visit: Visit, name: str, body: bytes, media: str) -> Outcome:
    """POST the body to this app's predict route as the visitor (see the module docstring)."""
    client_ip = visit.meta.client_ip or "127.0.0.1"
    transport = httpx.ASGITransport(app=visit.request.app, client=(client_ip, 0))
    headers = {
        "authorization": f"Bearer {visit.visitor.token}",
        "content-type": media,
        "accept": "application/json",
    }
    async with httpx.AsyncClient(transport=transport, base_url=INTERNAL_BASE) as client:
        started = time.perf_counter()
        response = await client.post(
            f"/v1/models/{quote(name, safe='')}/predict", content=body, headers=headers
        )
        latency_ms = (time.perf_counter() - started) * 1000
    try:
        text = orjson.dumps(response.json(), option=orjson.OPT_INDENT_2).decode()
    except ValueError:
        text = response.text
    return Outcome(
        status=response.status_code,
        body=text,
        version=response.headers.get("x-model-version"),
        latency_ms=latency_ms,
    )
