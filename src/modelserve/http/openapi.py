"""The OpenAPI document: each model's predict endpoints with its real schemas, and every error.

Each model's predict paths are documented by the routes of `http/predict_docs.py`, which serve
a request that reaches them through the same pipeline adapter, so the documentation cannot drift
from the behaviour. `install_openapi` makes `/openapi.json` follow the runtime: a version
promoted through the registry gets its own paths and schemas as soon as it is served, and the
document lists the statuses the guard, the body parser and the codec add to a route.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from modelserve.errors import (
    AuthenticationError,
    MalformedBodyError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
)
from modelserve.http.error_docs import error_responses
from modelserve.http.predict import PredictEndpoint
from modelserve.http.predict_docs import build_model_docs_router, documented_models
from modelserve.runtime.manager import ModelRuntime
from modelserve.schemas.wire import ErrorResponse

# Statuses any route behind a credential may answer (`http/deps.py`, `auth/guard.py`).
GUARD_RESPONSES = error_responses(AuthenticationError, PermissionDeniedError, RateLimitedError)
# Statuses any route that reads a body may answer before its handler runs: bytes that are not
# JSON (FastAPI's parser, or ours), and the body limit of `RequestContextMiddleware`.
BODY_RESPONSES = error_responses(MalformedBodyError, PayloadTooLargeError)

VERSION_HEADER_DOC = {
    "description": "The model version that answered.",
    "schema": {"type": "string"},
}
NON_FINITE_HEADER_DOC = {
    "description": "`true` when a number of the output was NaN or infinite (sent as `null`).",
    "schema": {"type": "string", "enum": ["true"]},
}
# Strings of a predict body never hold NUL (`schemas/strict.py` refuses it with a 422).
NO_NUL_PATTERN = "^[^\\u0000]*$"
NULLABLE_NUMBER_NOTE = (
    "Numbers may be `null`: JSON has no NaN or infinity, so a model output holding one is sent "
    "as `null` with the header `X-Non-Finite-Output: true`."
)
PREDICT_PREFIX = "/v1/models/"


def served_signature(runtime: ModelRuntime) -> tuple[tuple[str, str, bool], ...]:
    """What the document depends on: every loaded version and which ones answer unpinned."""
    return tuple(
        (d.spec.name, d.spec.version, unpinned) for d, unpinned in documented_models(runtime)
    )


def install_openapi(app: FastAPI) -> None:
    """Serve an `/openapi.json` rebuilt whenever the runtime's served set changes.

    FastAPI builds the document once and caches it in `app.openapi_schema`; the registry loads
    and retires versions at run time, so the cache is kept with the `served_signature` it was
    built for and rebuilt when that differs (a tuple compare per `/openapi.json`, nothing per
    predict). Needs `app.state.runtime` and `app.state.predict_endpoint`; idempotent.
    """
    if getattr(app.state, "openapi_installed", False):
        return
    app.state.openapi_installed = True
    built_for: list[object] = [None]

    def openapi() -> dict[str, Any]:
        runtime: ModelRuntime = app.state.runtime
        signature = served_signature(runtime)
        if app.openapi_schema is None or built_for[0] != signature:
            app.openapi_schema = build_document(app, runtime, app.state.predict_endpoint)
            built_for[0] = signature
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def build_document(
    app: FastAPI, runtime: ModelRuntime, endpoint: PredictEndpoint
) -> dict[str, Any]:
    """The whole document for the models served now."""
    # FastAPI keeps included routers nested; their contexts carry each route's full path and
    # the router's dependencies, and `get_openapi` takes them as they are.
    fixed = [r for r in iter_route_contexts(app.routes) if not _is_predict_route(r)]
    models = iter_route_contexts(build_model_docs_router(runtime, endpoint).routes)
    routes = [*fixed, *models]
    document = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        summary=app.summary,
        description=app.description,
        routes=routes,
        webhooks=app.webhooks.routes,
        tags=app.openapi_tags,
        servers=app.servers,
        separate_input_output_schemas=app.separate_input_output_schemas,
    )
    guarded = getattr(app.state, "auth", None) is not None
    _add_route_errors(document, routes, guarded=guarded)
    _describe_predict_wire(document)
    return document


def _is_predict_route(route: RouteContext) -> bool:
    return (
        isinstance(route.original_route, APIRoute)
        and (route.path or "").startswith(PREDICT_PREFIX)
        and route.methods == {"POST"}
    )


def _scopes(dependant: Any) -> Iterator[str]:
    for dependency in dependant.dependencies:
        scope = getattr(dependency.call, "required_scope", None)
        if scope is not None:
            yield scope
        yield from _scopes(dependency)


def _add_route_errors(
    document: dict[str, Any], routes: Iterable[RouteContext], *, guarded: bool
) -> None:
    """Document the statuses no handler declares because middleware and dependencies answer
    them: 401/403/429 behind a credential (with auth on), 400/413 where a body is read; and
    every 422 in the one error shape (FastAPI documents its own `HTTPValidationError`)."""
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault(
        "ErrorResponse",
        ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}"),
    )
    paths = document.get("paths", {})
    for route in routes:
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        scopes = set(_scopes(route.dependant))
        extra: dict[int | str, dict[str, Any]] = {}
        if guarded and scopes - {"public"}:
            extra.update(GUARD_RESPONSES)
        if route.body_field is not None or (route.openapi_extra or {}).get("requestBody"):
            extra.update(BODY_RESPONSES)
        for method in route.methods or ():
            operation = paths.get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status, entry in extra.items():
                responses.setdefault(
                    str(status),
                    {
                        "description": entry["description"],
                        "content": {"application/json": {"schema": dict(error_ref)}},
                    },
                )
            invalid = responses.get("422")
            # FastAPI's own validation error only: a route that documents its 422 keeps it.
            if invalid is not None and _referenced(
                invalid, "#/components/schemas/HTTPValidationError"
            ):
                invalid["content"] = {"application/json": {"schema": dict(error_ref)}}
    for unused in ("HTTPValidationError", "ValidationError"):
        if not _referenced(document, f"#/components/schemas/{unused}"):
            schemas.pop(unused, None)


def _describe_predict_wire(document: dict[str, Any]) -> None:
    """What the predict codec does that Pydantic's schemas cannot say: output numbers may be
    null (NaN and infinities, flagged by a header), and body strings never hold NUL."""
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    inputs: set[str] = set()
    outputs: set[str] = set()
    for path, item in document.get("paths", {}).items():
        operation = item.get("post")
        if not path.startswith(PREDICT_PREFIX) or operation is None:
            continue
        for content in operation.get("requestBody", {}).get("content", {}).values():
            inputs |= _components(content.get("schema", {}), schemas)
        ok = operation.get("responses", {}).get("200")
        if ok is not None:
            outputs |= _components(ok, schemas)
            ok["headers"] = {
                "X-Model-Version": VERSION_HEADER_DOC,
                "X-Non-Finite-Output": NON_FINITE_HEADER_DOC,
            }
    # Schemas every other route uses (errors, item errors) and input schemas stay as they are.
    shared = inputs | {"ErrorResponse", "ErrorDetail", "ItemErrorInfo"}
    for name in outputs - shared:
        schema = schemas[name]
        if _nullable_numbers(schema):
            note = schema.get("description")
            schema["description"] = (
                f"{note}\n\n{NULLABLE_NUMBER_NOTE}" if note else NULLABLE_NUMBER_NOTE
            )
    for name in inputs:
        _no_nul_strings(schemas[name])


def _components(node: Any, schemas: dict[str, Any], found: set[str] | None = None) -> set[str]:
    """Names of the component schemas `node` reaches through `$ref`s."""
    found = set() if found is None else found
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name not in found and name in schemas:
                found.add(name)
                _components(schemas[name], schemas, found)
        for value in node.values():
            _components(value, schemas, found)
    elif isinstance(node, list):
        for value in node:
            _components(value, schemas, found)
    return found


def _subschemas(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The schemas nested in a schema (not `properties` maps, `enum` or default values)."""
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            yield schema[key]
    for key in ("properties", "patternProperties", "$defs"):
        for value in (schema.get(key) or {}).values():
            if isinstance(value, dict):
                yield value
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for value in schema.get(key) or ():
            if isinstance(value, dict):
                yield value


def _nullable_numbers(schema: dict[str, Any]) -> bool:
    """Let every `number` in `schema` be null too; True when there was one."""
    changed = False
    kind = schema.get("type")
    if kind == "number":
        schema["type"] = ["number", "null"]
        changed = True
    elif isinstance(kind, list) and "number" in kind and "null" not in kind:
        kind.append("null")
        changed = True
    for sub in _subschemas(schema):
        changed = _nullable_numbers(sub) or changed
    return changed


def _no_nul_strings(schema: dict[str, Any]) -> None:
    if schema.get("type") == "string" and "pattern" not in schema and "format" not in schema:
        schema["pattern"] = NO_NUL_PATTERN
    for sub in _subschemas(schema):
        _no_nul_strings(sub)


def _referenced(node: Any, ref: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == ref or any(_referenced(v, ref) for v in node.values())
    if isinstance(node, list):
        return any(_referenced(v, ref) for v in node)
    return False
