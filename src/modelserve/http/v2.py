"""The Open Inference Protocol V2 (KServe, Triton, MLServer clients) over the one pipeline.

`POST /v2/models/{name}[/versions/{version}]/infer` is a predict request like any other: its
adapter (`V2Endpoint`) opens a `PredictCall` with the `V2Wire` format and runs the pipeline's
steps, so API keys, limits, the traffic policy (canary, shadow), the engine, metrics, the
access log and the version header are the native route's. `ModelserveApp.dispatch` sends it
here before FastAPI, as it does the native predict paths. `V2Wire` is all that differs: the
request's tensors become the version's inputs (`protocols/v2.py` maps them, the version's
strict schema validates the rows), the outputs become tensors, JSON or binary (the binary
tensor data extension), and errors are V2's `{"error": "..."}`.

The read routes (server and model metadata, health, readiness) are FastAPI routes of
`build_v2_router`, answered in the same error shape by `V2Route`.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, NamedTuple

import orjson
from fastapi import APIRouter, Body, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.responses import Response

from modelserve.errors import (
    ItemRejectedError,
    MalformedBodyError,
    ModelserveError,
    ServiceDefinitionError,
    ServiceNotFoundError,
    UnsupportedMediaError,
)
from modelserve.http.codec import NON_FINITE_HEADER, Headers, ServiceCodec
from modelserve.http.context import (
    REQUEST_ID_KEY,
    check_encoding,
    header,
)
from modelserve.http.deps import PREDICT_GUARDED, PUBLIC, Authenticated
from modelserve.http.errors import render_error
from modelserve.http.pipeline import PredictCall, PredictPipeline
from modelserve.http.predict import PredictEndpoint, Responder, serve_asgi, serve_now
from modelserve.http.predict_docs import PredictRoute
from modelserve.http.wire import WireFormat
from modelserve.protocols.v2 import (
    InferRequest,
    TensorMap,
    decode_request,
    encode_response,
    tensor_map,
    validate_rows,
)
from modelserve.runtime.manager import DeployedService, ModelRuntime
from modelserve.service.spec import ServiceSpec
from modelserve.types import Receive, Scope, Send, ServiceStatus

PREFIX = "/v2/models/"
ROUTE_INFER = "/v2/models/{name}/infer"
ROUTE_INFER_PINNED = "/v2/models/{name}/versions/{version}/infer"
HEADER_LENGTH = b"inference-header-content-length"
OCTET_STREAM = b"application/octet-stream"
EXTENSIONS = ["binary_tensor_data"]
V2_MEDIA = (b"application/json", OCTET_STREAM, b"application/x-www-form-urlencoded")
READY_RETRY_AFTER_S = "1"
# Problems a V2 error message quotes before "and N more" (the rest are in the access log's
# error code only: V2 errors are one string).
QUOTED_PROBLEMS = 3


class InferMatch(NamedTuple):
    """A V2 infer path: the model, and the version it pins (None: the traffic policy's)."""

    name: str
    version: str | None


def match(path: str) -> InferMatch | None:
    """The model and pinned version of a V2 infer path, else None."""
    if not path.startswith(PREFIX) or not path.endswith("/infer"):
        return None
    parts = path[len(PREFIX) :].split("/")
    if len(parts) == 2 and parts[0]:
        return InferMatch(parts[0], None)
    if len(parts) == 4 and parts[0] and parts[1] == "versions" and parts[2]:
        return InferMatch(parts[0], parts[2])
    return None


def v2_error_body(code: str, message: str, details: Any, request_id: str | None) -> bytes:
    """V2's error shape, `{"error": "..."}`: the message, and the first problems of a list."""
    text = message
    if isinstance(details, list) and details:
        quoted = []
        for problem in details[:QUOTED_PROBLEMS]:
            if isinstance(problem, dict) and "msg" in problem:
                loc = ".".join(str(part) for part in problem.get("loc", ()))
                quoted.append(f"{loc}: {problem['msg']}" if loc else str(problem["msg"]))
        if quoted:
            more = len(details) - len(quoted)
            text += " (" + "; ".join(quoted) + (f"; and {more} more" if more > 0 else "") + ")"
    return orjson.dumps({"error": text})


class V2Wire(WireFormat):
    """V2's bodies: tensors in (JSON, or JSON + binary data), tensors out, `{"error"}` errors."""

    name = "v2"

    def __init__(self) -> None:
        # One tensor map per loaded version, gone with the version's codec.
        self._maps: weakref.WeakKeyDictionary[ServiceCodec, TensorMap] = weakref.WeakKeyDictionary()

    def tensors(self, codec: ServiceCodec, spec: ServiceSpec) -> TensorMap:
        """The version's tensor map, derived on first use."""
        found = self._maps.get(codec)
        if found is None:
            found = self._maps[codec] = spec_tensors(spec)
        return found

    def check(self, call: PredictCall) -> None:
        content_type = encoding = length = None
        for key, value in call.headers:  # one pass: this runs on every infer request
            if key == b"content-type" and content_type is None:
                content_type = value
            elif key == b"content-encoding" and encoding is None:
                encoding = value
            elif key == HEADER_LENGTH and length is None:
                length = value
        check_encoding(encoding)
        if content_type is not None:
            media = content_type.split(b";", 1)[0].strip().lower()
            # curl's `-d` default type too: KServe's and Triton's own examples send it so.
            if not (media in V2_MEDIA or media.endswith(b"+json")):
                raise UnsupportedMediaError(
                    "send a V2 infer request as JSON, or as JSON followed by binary tensor data"
                    " (with the Inference-Header-Content-Length header)",
                    details={"content_type": media.decode("latin-1")[:100]},
                )
        # A binary body goes to the prediction log by size and digest, never as bytes.
        call.raw = length is not None
        call.wire_state = length  # for `parse`, which replaces it with the decoded request

    def parse(self, call: PredictCall, codec: ServiceCodec) -> list[Any]:
        # The codec's version, not the call's: a shadow copy parses the body for its own.
        spec = codec.spec
        # `check` left the header's value (a shadow copy's call already holds the request).
        declared = call.wire_state if not isinstance(call.wire_state, InferRequest) else None
        if declared is None and call.raw:
            declared = header(call.headers, HEADER_LENGTH)
        head, binary = split_body(call.body, declared)
        request = decode_request(head, binary, self.tensors(codec, spec), codec.max_inputs)
        call.wire_state = request
        return validate_rows(request.rows, spec.wire_input_type.model_validate)

    def dump(
        self, call: PredictCall, codec: ServiceCodec, results: list[Any]
    ) -> tuple[bytes, Headers]:
        request: InferRequest = call.wire_state
        assert request is not None  # parsed
        for index, result in enumerate(results):
            if isinstance(result, ItemRejectedError):
                # A V2 answer has no per-row errors: the first rejected row fails the request.
                raise ItemRejectedError(
                    f"row {index}: {result.message}", code=result.code, details=result.details
                )
        spec = codec.spec
        body, head_length, non_finite = encode_response(results, request, spec.name, spec.version)
        headers: Headers = [codec.version_header]
        if head_length is not None:
            call.media = OCTET_STREAM
            headers.append((HEADER_LENGTH, str(head_length).encode()))
        if non_finite:
            headers.append(NON_FINITE_HEADER)
        return body, headers

    def error_body(self, code: str, message: str, details: Any, request_id: str | None) -> bytes:
        return v2_error_body(code, message, details, request_id)


def spec_tensors(spec: ServiceSpec) -> TensorMap:
    """A version's tensors: derived from its types, with the Service's `v2 = tensors(...)`."""
    overrides = getattr(spec.cls, "v2", None)
    try:
        return tensor_map(spec.input_type, spec.output_type, overrides)
    except ValueError as exc:
        raise ServiceDefinitionError(f"{spec.cls.__qualname__}: {exc}") from None


def split_body(body: bytes, declared: bytes | None) -> tuple[bytes, bytes]:
    """The JSON head and the binary tensor data of a body (the binary extension), or the whole
    body and nothing without `Inference-Header-Content-Length`."""
    if declared is None:
        return body, b""
    try:
        length = int(declared)
    except ValueError:
        length = -1
    if not 0 < length <= len(body) or not declared.strip().isdigit():
        raise MalformedBodyError(
            f"Inference-Header-Content-Length must be the JSON head's length, 1 to the body's"
            f" {len(body)} bytes"
        )
    return body[:length], body[length:]


class V2Endpoint:
    """The infer route's ASGI adapter: a call with the V2 wire format, through the pipeline."""

    def __init__(self, endpoint: PredictEndpoint) -> None:
        self.pipeline: PredictPipeline = endpoint.pipeline
        self.wire = V2Wire()

    def open(self, scope: Scope, name: str, version: str | None) -> PredictCall:
        """The pipeline's call of one infer request: a batch call with the V2 wire format."""
        return self.pipeline.open(
            name,
            version,
            True,
            scope["headers"],
            scope["query_string"],
            wire=self.wire,
            route=ROUTE_INFER if version is None else ROUTE_INFER_PINNED,
        )

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, name: str, version: str | None
    ) -> None:
        """Answer one infer request (the steps awaited, the answer as two messages)."""
        await serve_asgi(self.pipeline, self.open(scope, name, version), scope, receive, send)

    def serve_now(
        self, name: str, version: str | None, scope: Scope, body: bytes, respond: Responder
    ) -> bool:
        """The HTTP protocol's task-free path, as `PredictEndpoint.serve_now` (which see):
        the same steps without a coroutine; False, having answered nothing, when the
        credential needs a lookup."""
        return serve_now(self.pipeline, self.open(scope, name, version), body, respond)

    def asgi_route(self) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        """An ASGI app serving the infer routes from their path parameters (the documented
        FastAPI routes' own app, as `PredictEndpoint.asgi_route`)."""

        async def serve(scope: Scope, receive: Receive, send: Send) -> None:
            params = scope.get("path_params", {})
            await self(scope, receive, send, params["name"], params.get("version"))

        return serve


# -- documents ---------------------------------------------------------------------------------


class V2Error(BaseModel):
    """Every error on a V2 route: one message."""

    error: str


class TensorData(BaseModel):
    """One tensor: `data` in row-major order (flat or nested), or, with the binary extension,
    `parameters.binary_data_size` bytes of the data after the JSON head."""

    name: str
    datatype: str = Field(description="BOOL, INT8..INT64, UINT8..UINT64, FP16, FP32, FP64, BYTES")
    shape: list[int] = Field(description="The first dimension is the batch (rows)")
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class RequestedOutput(BaseModel):
    """An output to return; `parameters.binary_data: true` returns it as binary data."""

    name: str
    parameters: dict[str, Any] | None = None


class InferRequestBody(BaseModel):
    """A V2 inference request: N rows in every input tensor are N inputs of one batch."""

    id: str | None = None
    parameters: dict[str, Any] | None = Field(
        None, description="`binary_data_output: true` returns every output as binary data"
    )
    inputs: list[TensorData] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


class InferResponseBody(BaseModel):
    """A V2 inference response."""

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[TensorData]


class TensorMetadata(BaseModel):
    """One tensor of a model: -1 is any size (the first dimension is the batch)."""

    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    """A model's tensors; `parameters.unsupported` names fields that have none, with why."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] | None = None


class ServerMetadata(BaseModel):
    """The server's name, version and protocol extensions."""

    name: str
    version: str
    extensions: list[str]


class Live(BaseModel):
    """The process answers."""

    live: bool


class Ready(BaseModel):
    """Every model is ready (the /readyz rule)."""

    ready: bool


class ModelReady(BaseModel):
    """One model version is ready."""

    name: str
    ready: bool


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": V2Error, "description": DESCRIPTIONS[status]} for status in statuses}


DESCRIPTIONS = {
    400: "Not a consistent V2 request (shape, datatype, sizes, unknown tensor, bad JSON)",
    401: "No valid credential",
    403: "The credential may not use this model",
    404: "No such model or version",
    413: "Body over the size limit",
    415: "Not JSON (or JSON + binary data), or compressed",
    422: "Rows that do not meet the model's input schema, or too many rows",
    429: "Rate limited",
    431: "Too many headers",
    500: "The model failed",
    503: "The model is loading or its queue is full (Retry-After)",
    504: "Past the request's deadline",
}


class V2Route(APIRoute):
    """A V2 read route: a `ModelserveError` from its dependencies (401, 403, 429) or its body
    (404) is answered in V2's error shape, as the infer route's are."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as exc:
                # FastAPI's own (a path parameter that does not parse): 422, in V2's shape.
                problems = [
                    {"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()
                ]
                body = v2_error_body("invalid_input", "Request is invalid", problems, None)
                return Response(body, status_code=422, media_type="application/json")
            except ModelserveError as exc:
                request_id = request.scope.get(REQUEST_ID_KEY)
                rid = request_id if isinstance(request_id, str) else None
                status, extra, body = render_error(exc, rid, v2_error_body)
                return Response(
                    body,
                    status_code=status,
                    media_type="application/json",
                    headers={k.decode(): v.decode() for k, v in extra},
                )

        return handler


def _json(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        model.model_dump_json(exclude_none=True),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def describe_model(
    deployed: DeployedService, versions: list[str], tmap: TensorMap
) -> ModelMetadata:
    """V2 metadata of one version: its tensors, and the fields without one."""
    spec = deployed.spec
    unsupported = tmap.unsupported()
    return ModelMetadata(
        name=spec.name,
        versions=versions,
        platform="modelserve",
        inputs=[TensorMetadata(**t.metadata()) for t in tmap.inputs.values()],
        outputs=[TensorMetadata(**t.metadata()) for t in tmap.outputs.values()],
        parameters={"unsupported": unsupported} if unsupported else None,
    )


def build_v2_router(
    runtime: ModelRuntime, endpoint: PredictEndpoint, v2: V2Endpoint, *, server_version: str
) -> APIRouter:
    """The V2 routes: server metadata, health, model metadata and readiness (read), and the
    documented infer routes (served by `v2`; `ModelserveApp.dispatch` reaches it first)."""
    router = APIRouter(route_class=V2Route, tags=["open inference protocol v2"])
    # Absent fields stay absent (V2 clients read `parameters` and `id` only when present).
    get = functools.partial(router.get, response_model_exclude_none=True)

    def pick(name: str, pinned: str | None) -> tuple[DeployedService, list[str]]:
        versions = runtime.versions(name)
        if pinned is None:
            return runtime.get(name), sorted(versions)
        deployed = versions.get(pinned)
        if deployed is None:
            raise ServiceNotFoundError(f"model {name!r} has no loaded version {pinned!r}")
        return deployed, [pinned]

    @get("/v2", summary="Server metadata", responses=_errors(401, 403, 429))
    async def server_metadata(principal: Authenticated) -> ServerMetadata:
        return ServerMetadata(name="modelserve", version=server_version, extensions=EXTENSIONS)

    @get("/v2/health/live", summary="Process is alive", dependencies=[PUBLIC])
    async def live() -> Live:
        return Live(live=True)

    @get(
        "/v2/health/ready",
        summary="Every model is ready (as /readyz)",
        dependencies=[PUBLIC],
        responses={503: {"model": Ready, "description": "Not every model is ready"}},
    )
    async def ready(request: Request) -> Response:
        ok = runtime.is_ready(any_ready=request.app.state.settings.ready_when_any)
        if ok:
            return _json(Ready(ready=True))
        return _json(Ready(ready=False), 503, {"retry-after": READY_RETRY_AFTER_S})

    async def metadata(name: str, pinned: str | None) -> ModelMetadata:
        deployed, versions = pick(name, pinned)
        # The infer route's own map of the version (one per version, built once).
        tmap = v2.wire.tensors(endpoint.codec(deployed), deployed.spec)
        return describe_model(deployed, versions, tmap)

    async def model_ready(name: str, pinned: str | None) -> Response:
        deployed, _ = pick(name, pinned)
        if deployed.status is ServiceStatus.READY and deployed.engine is not None:
            return _json(ModelReady(name=name, ready=True))
        return _json(ModelReady(name=name, ready=False), 503, {"retry-after": READY_RETRY_AFTER_S})

    model_errors: dict[int | str, dict[str, Any]] = {
        **_errors(401, 403, 404, 429),
        422: {"model": V2Error, "description": "A path parameter that does not parse"},
    }
    ready_responses: dict[int | str, dict[str, Any]] = {
        **model_errors,
        503: {"model": ModelReady, "description": "The version is loading, failed or stopping"},
    }

    @get("/v2/models/{name}", summary="Model metadata (its tensors)", responses=model_errors)
    async def model_metadata(name: str, principal: Authenticated) -> ModelMetadata:
        return await metadata(name, None)

    @get(
        "/v2/models/{name}/versions/{version}",
        summary="Model version metadata",
        responses=model_errors,
    )
    async def version_metadata(name: str, version: str, principal: Authenticated) -> ModelMetadata:
        return await metadata(name, version)

    @get("/v2/models/{name}/ready", summary="The model is ready", responses=ready_responses)
    async def is_model_ready(name: str, principal: Authenticated) -> Response:
        return await model_ready(name, None)

    @get(
        "/v2/models/{name}/versions/{version}/ready",
        summary="The model version is ready",
        responses=ready_responses,
    )
    async def is_version_ready(name: str, version: str, principal: Authenticated) -> Response:
        return await model_ready(name, version)

    infer_errors = _errors(400, 401, 403, 404, 413, 415, 422, 429, 431, 500, 503, 504)
    # With outputs asked for as binary data: the JSON head, then the tensors' bytes.
    infer_errors[200] = {
        "description": "The outputs: JSON, or JSON + binary tensor data",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
    serve = v2.asgi_route()
    for path, summary in (
        (ROUTE_INFER, "Infer (V2)"),
        (ROUTE_INFER_PINNED, "Infer with one version (V2)"),
    ):
        router.add_api_route(
            path,
            _infer_doc("{version}" in path, serve),
            methods=["POST"],
            route_class_override=PredictRoute,
            response_model=InferResponseBody,
            responses=infer_errors,
            summary=summary,
            description=INFER_DESCRIPTION,
            dependencies=[PREDICT_GUARDED],
        )
    return router


INFER_DESCRIPTION = (
    "N rows in every input tensor are N inputs of one batch. With the binary tensor data"
    " extension the body is the JSON head (`Inference-Header-Content-Length` bytes) followed by"
    " each input's `binary_data_size` bytes; outputs asked for as binary data come back the"
    " same way, as `application/octet-stream`. Mapping rules: docs/protocols.md. (The header"
    " is not a declared parameter: only the body's own length makes it valid.)"
)


def _infer_doc(pinned: bool, serve: Callable[[Scope, Receive, Send], Awaitable[None]]) -> Any:
    """The documented infer endpoint: its signature for FastAPI, `serve` for `PredictRoute`."""
    if pinned:

        async def infer_pinned(
            request: Request, name: str, version: str, payload: Annotated[InferRequestBody, Body()]
        ) -> Response:
            raise AssertionError("served by PredictRoute's adapter")  # pragma: no cover

        infer_pinned.serve = serve  # type: ignore[attr-defined]
        return infer_pinned

    async def infer(
        request: Request, name: str, payload: Annotated[InferRequestBody, Body()]
    ) -> Response:
        raise AssertionError("served by PredictRoute's adapter")  # pragma: no cover

    infer.serve = serve  # type: ignore[attr-defined]
    return infer
