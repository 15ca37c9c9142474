"""The OpenAI-compatible routes in `/openapi.json`: their request bodies, answers and errors.

`ModelserveApp.dispatch` answers these paths before FastAPI routing (http/openai.py), so the
routes here exist for the document; a request FastAPI routes to one all the same runs the same
endpoint (`PredictRoute`). Errors are OpenAI's error object, not modelserve's, so every status
the endpoint can answer is declared here with that shape.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel
from starlette.responses import Response

from modelserve.http.openai import MODEL_ROUTE, MODELS_PATH, PREFIX, OpenAIEndpoint
from modelserve.http.openai_wire import ChatRequest, CompletionRequest, EmbeddingsRequest
from modelserve.http.predict_docs import PredictRoute
from modelserve.types import Receive, Scope, Send

TAG = "OpenAI-compatible"


class OpenAIErrorDetail(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(BaseModel):
    """Every error of these routes."""

    error: OpenAIErrorDetail


class Usage(BaseModel):
    """Tokens of the request (words for a model that counts none of its own)."""

    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class EmbeddingUsage(BaseModel):
    """Tokens of the embedded texts."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingItem(BaseModel):
    """One vector: floats, or little-endian float32 bytes in base64."""

    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class EmbeddingsResponse(BaseModel):
    """The vectors of `input`, in order."""

    object: Literal["list"]
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingUsage


class ChatMessage(BaseModel):
    """The generated message."""

    role: Literal["assistant"]
    content: str
    refusal: None = None


class ChatChoice(BaseModel):
    """The one choice (n=1)."""

    index: int
    message: ChatMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length"]


class ChatCompletion(BaseModel):
    """`stream: false`. With `stream: true`, `chat.completion.chunk` events, then `[DONE]`."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: None = None
    choices: list[ChatChoice]
    usage: Usage


class TextChoice(BaseModel):
    """The one choice (n=1)."""

    index: int
    text: str
    logprobs: None = None
    finish_reason: Literal["stop", "length"]


class TextCompletion(BaseModel):
    """`stream: false`. With `stream: true`, `text_completion` events, then `[DONE]`."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    system_fingerprint: None = None
    choices: list[TextChoice]
    usage: Usage


class OpenAIModel(BaseModel):
    """One model the credential may call."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class OpenAIModelList(BaseModel):
    """The models the credential may call."""

    object: Literal["list"]
    data: list[OpenAIModel]


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "A request OpenAI would refuse, or one naming a parameter not served (n > 1,"
        " tools, logprobs)",
        401: "No valid credential (a modelserve API key as the bearer key)",
        403: "The key may not call this model",
        404: "No such model, or not marked for this route (`Service.openai`)",
        413: "Body over the size limit",
        415: "Not JSON",
        422: "The text does not fit the model's input (its length, say)",
        429: "Rate limited",
        500: "The model failed",
        503: "Loading, overloaded or shutting down (Retry-After)",
        504: "Past the deadline",
    }
    return {s: {"model": OpenAIError, "description": described[s]} for s in statuses}


POST_ERRORS = _errors(400, 401, 403, 404, 413, 415, 422, 429, 500, 503, 504)
SSE_CONTENT = {
    "text/event-stream": {
        "schema": {
            "type": "string",
            "description": "With `stream: true`: `data: {chunk}` events, then `data: [DONE]`",
        }
    }
}


def build_openai_router(endpoint: OpenAIEndpoint) -> APIRouter:
    """Documented routes for the OpenAI-compatible paths (at /openai/v1 and /v1)."""
    router = APIRouter()
    posts: list[tuple[str, str, Any, type[BaseModel], str]] = [
        ("/embeddings", "embeddings", EmbeddingsRequest, EmbeddingsResponse, "Embed texts"),
        ("/chat/completions", "chat", ChatRequest, ChatCompletion, "Chat completion"),
        ("/completions", "text", CompletionRequest, TextCompletion, "Text completion"),
    ]
    for suffix, kind, request, response, summary in posts:
        for base in (PREFIX, "/v1"):
            path = base + suffix
            router.add_api_route(
                path,
                _documented(request, _serve(endpoint, kind)),
                methods=["POST"],
                route_class_override=PredictRoute,
                response_model=response,
                responses={
                    **POST_ERRORS,
                    **({200: {"content": SSE_CONTENT}} if kind != "embeddings" else {}),
                },
                summary=summary,
                tags=[TAG],
                name=f"openai:{path}",
            )
    for path, summary, answer in (
        (MODELS_PATH, "Models, in OpenAI's list shape", OpenAIModelList),
        (MODEL_ROUTE, "One model, in OpenAI's shape", OpenAIModel),
    ):
        router.add_api_route(
            path,
            _documented(None, _serve(endpoint, "models"), model_param=path == MODEL_ROUTE),
            methods=["GET"],
            route_class_override=PredictRoute,
            response_model=answer,
            # FastAPI documents a 422 for the path parameter on its own: in OpenAI's shape.
            responses=_errors(401, 404, 422) if path == MODEL_ROUTE else _errors(401),
            summary=summary,
            tags=[TAG],
            name=f"openai:{path}",
        )
    return router


def _serve(
    endpoint: OpenAIEndpoint, kind: str
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        await endpoint(scope, receive, send, kind)

    return serve


def _documented(
    request_model: Any,
    serve: Callable[[Scope, Receive, Send], Awaitable[None]],
    *,
    model_param: bool = False,
) -> Any:
    """An endpoint whose signature FastAPI documents, served by `PredictRoute`'s adapter."""

    async def route(request: Request, **_params: Any) -> Response:
        raise AssertionError("served by PredictRoute's adapter")  # pragma: no cover

    parameters = [
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)
    ]
    if request_model is not None:
        parameters.append(
            inspect.Parameter(
                "payload",
                inspect.Parameter.KEYWORD_ONLY,
                annotation=request_model,
                default=Body(...),
            )
        )
    if model_param:
        parameters.append(
            inspect.Parameter("model", inspect.Parameter.KEYWORD_ONLY, annotation=str)
        )
    route.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        parameters, return_annotation=Response
    )
    route.serve = serve  # type: ignore[attr-defined]
    return route
