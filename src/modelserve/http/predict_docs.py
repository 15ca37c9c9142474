"""The FastAPI routes that document each model's predict paths, and serve them through the
pipeline when a request reaches one.

`ModelserveApp.dispatch` answers every `POST /v1/models/...` before FastAPI routing, so these
routes exist for `/openapi.json` and `/docs`: each model's unpinned and pinned predict and
predict/batch with that version's real schemas. Each is a `PredictRoute`, whose app is the
predict endpoint's ASGI adapter, so a request FastAPI routes to one is answered by the same
pipeline (tests/http/test_protocol.py compares the ways in byte for byte).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, create_model
from starlette.responses import Response

from modelserve.errors import (
    DeadlineExceededError,
    InvalidInputError,
    MalformedBodyError,
    OutputMismatchError,
    OverloadedError,
    PayloadTooLargeError,
    PredictionError,
    ServiceNotFoundError,
    ServiceUnavailableError,
    UnsupportedMediaError,
)
from modelserve.http.deps import PREDICT_GUARDED
from modelserve.http.error_docs import error_responses
from modelserve.http.predict import PredictEndpoint
from modelserve.runtime.manager import DeployedService, ModelRuntime
from modelserve.schemas.wire import ItemErrorInfo
from modelserve.types import Receive, Scope, Send

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = error_responses(
    MalformedBodyError,
    ServiceNotFoundError,
    PayloadTooLargeError,
    UnsupportedMediaError,
    InvalidInputError,
    PredictionError,
    OutputMismatchError,
    ServiceUnavailableError,
    OverloadedError,
    DeadlineExceededError,
)
"""What any predict route answers besides 200 (auth adds 401/403/429, see `install_openapi`)."""


def raw_body(codec_raw_field: str, input_schema: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` of a predict route that takes the field's bytes as the whole body."""
    field = input_schema.get("properties", {}).get(codec_raw_field, {})
    schema: dict[str, Any] = {"type": "string", "format": "binary"}
    # The field's own size limits apply to the raw body too (a 422 otherwise).
    schema.update({k: field[k] for k in ("minLength", "maxLength") if k in field})
    return {"requestBody": {"content": {"application/octet-stream": {"schema": schema}}}}


def documented_models(runtime: ModelRuntime) -> Iterator[tuple[DeployedService, bool]]:
    """Each loaded version, and whether it is the one answering its model's unpinned requests.

    Before the runtime starts (no traffic policy yet) a model's first version is taken.
    """
    seen: set[str] = set()
    primaries = {m.name: m.primary for m in runtime.models()}
    for deployed in runtime:
        name = deployed.spec.name
        primary = primaries.get(name)
        unpinned = deployed is primary if primary is not None else name not in seen
        seen.add(name)
        yield deployed, unpinned


def build_model_docs_router(runtime: ModelRuntime, endpoint: PredictEndpoint) -> APIRouter:
    """Documented POST routes for the models loaded now: each model's unpinned predict and
    predict/batch, and the same for each loaded version, pinned, with that version's schemas.

    The generic `{name}` routes stay as routes (a GET there is a 405 naming POST) but out of the
    document: every served model has its own paths, which say what its body must be.
    """
    router = APIRouter()
    for deployed, unpinned in documented_models(runtime):
        spec = deployed.spec
        route = endpoint.codec(deployed)
        batch_response: type[BaseModel] = create_model(
            f"{spec.output_type.__name__}BatchResponse",
            outputs=(list[spec.output_type | None], ...),  # type: ignore[name-defined]
            errors=(list[ItemErrorInfo], ...),
        )
        raw = raw_body(route.raw_field, spec.input_schema()) if route.raw_field else None
        prefixes: list[tuple[str, str | None]] = [
            (f"/v1/models/{spec.name}/versions/{spec.version}", spec.version)
        ]
        if unpinned:
            prefixes.insert(0, (f"/v1/models/{spec.name}", None))
        for prefix, pinned in prefixes:
            for is_batch in (False, True):
                path = f"{prefix}/predict/batch" if is_batch else f"{prefix}/predict"
                summary = (
                    f"Predict up to {route.max_inputs} inputs" if is_batch else "Predict one input"
                )
                router.add_api_route(
                    path,
                    _documented(
                        path,
                        spec.name,
                        pinned,
                        route.batch_model if is_batch else spec.wire_input_type,
                        endpoint.asgi_route(spec.name, pinned, is_batch),
                    ),
                    methods=["POST"],
                    route_class_override=PredictRoute,
                    response_model=batch_response if is_batch else spec.output_type,
                    responses=ERROR_RESPONSES,
                    summary=summary if pinned is None else f"{summary} (version {pinned})",
                    description=spec.description,
                    tags=[spec.name],
                    dependencies=[PREDICT_GUARDED],
                    name=f"{spec.name}:{pinned or ''}:{'predict_batch' if is_batch else 'predict'}",
                    # A model whose input is one bytes field also takes the raw bytes as the body.
                    openapi_extra=_extra(
                        raw if raw is not None and not is_batch else None,
                        spec.streams and not is_batch,
                    ),
                )
    for path, is_batch in (
        ("/v1/models/{name}/predict", False),
        ("/v1/models/{name}/predict/batch", True),
        ("/v1/models/{name}/versions/{version}/predict", False),
        ("/v1/models/{name}/versions/{version}/predict/batch", True),
    ):
        router.add_api_route(
            path,
            _documented(
                path, None, None, dict[str, Any], endpoint.asgi_route(None, None, is_batch)
            ),
            methods=["POST"],
            route_class_override=PredictRoute,
            responses=ERROR_RESPONSES,
            dependencies=[PREDICT_GUARDED],
            name=f"generic:{path}",
            include_in_schema=False,
        )
    return router


STREAM_EXTRA: dict[str, Any] = {
    "parameters": [
        {
            "name": "stream",
            "in": "query",
            "required": False,
            "schema": {"type": "boolean", "default": False},
            "description": "Answer in chunks from `predict_stream`: server-sent events (or JSON"
            " lines with `Accept: application/x-ndjson`). See docs/protocols.md.",
        }
    ],
    "responses": {
        "200": {
            "content": {
                "text/event-stream": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            }
        }
    },
}


def _extra(raw: dict[str, Any] | None, streams: bool) -> dict[str, Any] | None:
    """`openapi_extra` of a predict route: a raw body, and the stream query of a model with
    `predict_stream`."""
    if not streams:
        return raw
    return {**(raw or {}), **STREAM_EXTRA}


class PredictRoute(APIRoute):
    """A documented predict route: FastAPI reads its endpoint's signature for the document,
    and a request that reaches it runs the predict endpoint's ASGI adapter (the pipeline, the
    endpoint's `serve`), never FastAPI's body parsing and dependency solving.

    `ModelserveApp.dispatch` answers predict paths before FastAPI routing, so at run time
    these routes are reached only by a request FastAPI routes itself; either way the answer is
    the pipeline's (tests/http/test_protocol.py compares the three ways in byte for byte).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        # Called by APIRoute.__init__ and by every router that includes this route.
        answer = _Served(self.endpoint.serve)  # type: ignore[attr-defined]

        async def handler(request: Request) -> Response:
            return answer

        return handler


class _Served(Response):
    """What `PredictRoute`'s handler returns: the adapter, which writes the answer itself."""

    def __init__(self, serve: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        # Nothing of Response's own state: this response is never rendered, only called.
        self._serve = serve

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._serve(scope, receive, send)


def _documented(
    path: str,
    name: str | None,
    version: str | None,
    request_model: Any,
    serve: Callable[[Scope, Receive, Send], Awaitable[None]],
) -> Any:
    """An endpoint carrying the signature FastAPI documents (body and path parameters) and the
    adapter that serves it (`serve`, read by `PredictRoute`)."""

    async def predict(request: Request, payload: Any, **_path: str) -> Response:
        raise AssertionError("served by PredictRoute's adapter")  # pragma: no cover

    # FastAPI reads the parameters' types from the signature to document them.
    parameters = [
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
        inspect.Parameter(
            "payload", inspect.Parameter.KEYWORD_ONLY, annotation=request_model, default=Body(...)
        ),
    ]
    for param, fixed in (("name", name), ("version", version)):
        if fixed is None and (param == "name" or "{version}" in path):
            parameters.append(
                inspect.Parameter(param, inspect.Parameter.KEYWORD_ONLY, annotation=str)
            )
    predict.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        parameters, return_annotation=Response
    )
    predict.serve = serve  # type: ignore[attr-defined]
    return predict
