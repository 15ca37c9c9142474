"""Documentation routes: each model's predict endpoints with its real Input/Output schemas.

The fast path in `http/predict.py` answers these paths before FastAPI routing; the handlers
here answer the same way if they are ever reached, so the documentation cannot drift.
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, create_model
from starlette.responses import Response

from modelserve.http.context import REQUEST_ID_KEY
from modelserve.http.deps import PREDICT_GUARDED
from modelserve.http.predict import PredictEndpoint
from modelserve.observability.request_ids import new_request_id
from modelserve.runtime.manager import ModelRuntime
from modelserve.schemas.wire import ErrorResponse, ItemErrorInfo

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Malformed JSON"},
    404: {"model": ErrorResponse, "description": "No such model"},
    413: {"model": ErrorResponse, "description": "Body over the size limit"},
    415: {"model": ErrorResponse, "description": "Body type not taken (JSON; raw bytes)"},
    422: {"model": ErrorResponse, "description": "Input does not match the schema"},
    503: {"model": ErrorResponse, "description": "Model overloaded or not ready (see Retry-After)"},
    504: {"model": ErrorResponse, "description": "Model did not answer within its deadline"},
}

RAW_BODY: dict[str, Any] = {
    "requestBody": {
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    }
}


def build_model_docs_router(runtime: ModelRuntime, endpoint: PredictEndpoint) -> APIRouter:
    """One documented POST route per model and kind (single, batch)."""
    router = APIRouter()
    for deployed in runtime:
        spec = deployed.spec
        route = endpoint.codec(deployed)
        batch_response: type[BaseModel] = create_model(
            f"{spec.output_type.__name__}BatchResponse",
            outputs=(list[spec.output_type | None], ...),  # type: ignore[name-defined]
            errors=(list[ItemErrorInfo], ...),
        )
        for is_batch, path, request_model, response_model, summary in (
            (
                False,
                f"/v1/models/{spec.name}/predict",
                spec.wire_input_type,
                spec.output_type,
                "Predict one input",
            ),
            (
                True,
                f"/v1/models/{spec.name}/predict/batch",
                route.batch_model,
                batch_response,
                f"Predict up to {route.max_inputs} inputs",
            ),
        ):
            router.add_api_route(
                path,
                _make_handler(endpoint, path, spec.name, None, is_batch, request_model),
                methods=["POST"],
                response_model=response_model,
                responses=ERROR_RESPONSES,
                summary=summary,
                description=spec.description,
                tags=[spec.name],
                dependencies=[PREDICT_GUARDED],
                name=f"{spec.name}:{'predict_batch' if is_batch else 'predict'}",
                # A model whose input is one bytes field also takes the raw bytes as the body.
                openapi_extra=RAW_BODY if route.raw_field and not is_batch else None,
            )
    # Any model, including versions deployed later from the registry (their schemas are in
    # GET /v1/models/{name}); and any loaded version, pinned.
    for path, is_batch, summary in (
        ("/v1/models/{name}/predict", False, "Predict one input with any model"),
        ("/v1/models/{name}/predict/batch", True, "Predict a batch with any model"),
        ("/v1/models/{name}/versions/{version}/predict", False, "Predict with a pinned version"),
        (
            "/v1/models/{name}/versions/{version}/predict/batch",
            True,
            "Predict a batch with a pinned version",
        ),
    ):
        router.add_api_route(
            path,
            _make_handler(endpoint, path, None, None, is_batch, dict[str, Any]),
            methods=["POST"],
            responses=ERROR_RESPONSES,
            summary=summary,
            tags=["predict"],
            dependencies=[PREDICT_GUARDED],
            name=f"generic:{path}",
        )
    return router


def _make_handler(
    endpoint: PredictEndpoint,
    path: str,
    name: str | None,
    version: str | None,
    is_batch: bool,
    request_model: Any,
) -> Any:
    async def handler(request: Request, payload: Any, **_path: str) -> Response:
        params = request.path_params
        status, headers, body = await endpoint.respond(
            name or params["name"],
            version or params.get("version"),
            is_batch,
            await request.body(),
            list(request.scope["headers"]),
            request_id=request.scope.get(REQUEST_ID_KEY) or new_request_id(),
        )
        response = Response(body, status_code=status, media_type="application/json")
        for key, value in headers:
            response.headers[key.decode()] = value.decode()
        return response

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
    handler.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        parameters, return_annotation=Response
    )
    return handler
