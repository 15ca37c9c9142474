"""Read-only routes: the model catalogue and the health probes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from modelserve.http.deps import PUBLIC, Authenticated
from modelserve.http.errors import error_body
from modelserve.runtime.manager import DeployedService, ModelRuntime
from modelserve.schemas.registry import Split
from modelserve.schemas.wire import (
    BatchingInfo,
    ErrorResponse,
    HealthStatus,
    ModelInfo,
    ModelList,
    ModelStats,
    TrafficInfo,
    VersionInfo,
)


def get_runtime(request: Request) -> ModelRuntime:
    """The app's ModelRuntime."""
    runtime: ModelRuntime = request.app.state.runtime
    return runtime


Runtime = Annotated[ModelRuntime, Depends(get_runtime)]


def describe(
    deployed: DeployedService, runtime: ModelRuntime | None = None, *, admin: bool = False
) -> ModelInfo:
    """Public description of one served model, with its versions and traffic when known.

    A failure's `reason` is the generic one unless `admin` (the caller holds the `admin`
    scope): the full text may hold paths and secrets (S11).
    """
    spec = deployed.spec
    counters = deployed.counters
    engine = deployed.engine
    return ModelInfo(
        name=spec.name,
        version=spec.version,
        description=spec.description,
        status=deployed.status.value,
        reason=_reason(deployed, admin),
        isolation=spec.isolation,
        replicas=spec.replicas,
        batching=BatchingInfo(
            max_batch_size=spec.batching.max_batch_size,
            max_wait_ms=spec.batching.max_wait_ms,
            max_queue=spec.batching.max_queue,
            timeout_s=spec.batching.timeout_s,
        ),
        input_schema=spec.input_schema(),
        output_schema=spec.output_schema(),
        stats=ModelStats(
            queue_depth=engine.queue_depth if engine else 0,
            running_batches=engine.running_batches if engine else 0,
            batches=counters.batches,
            items=counters.items,
            shed=counters.shed,
            expired_in_queue=counters.expired_in_queue,
            abandoned_running=counters.abandoned_running,
            errors=dict(counters.errors),
        ),
        versions=_versions(runtime, spec.name, admin),
        traffic=_traffic(runtime, spec.name),
    )


def _reason(deployed: DeployedService, admin: bool) -> str | None:
    return (deployed.detail or deployed.reason) if admin else deployed.reason


def _versions(runtime: ModelRuntime | None, name: str, admin: bool = False) -> list[VersionInfo]:
    if runtime is None:
        return []
    return [
        VersionInfo(version=v, status=d.status.value, reason=_reason(d, admin))
        for v, d in runtime.versions(name).items()
    ]


def _traffic(runtime: ModelRuntime | None, name: str) -> TrafficInfo | None:
    policy = None if runtime is None else runtime.policy(name)
    if policy is None:
        return None
    return TrafficInfo(
        primary=policy.primary,
        canary=[Split(version=version, percent=percent) for version, percent in policy.canary],
        sticky=policy.sticky,
        shadow=policy.shadow,
        shadow_percent=policy.shadow_percent,
    )


READYZ_RETRY_AFTER_S = "1"


def build_router(*, ready_when_any: bool) -> APIRouter:
    """Routes for /v1/models, /livez and /readyz."""
    router = APIRouter()

    @router.get("/v1/models", tags=["models"], summary="List served models")
    async def list_models(runtime: Runtime, principal: Authenticated) -> ModelList:
        admin = principal.has_scope("admin")
        data = [
            describe(m.primary, runtime, admin=admin)
            for m in runtime.models()
            if m.primary is not None
        ]
        return ModelList(data=data, count=len(data))

    @router.get(
        "/v1/models/{name}",
        tags=["models"],
        summary="Describe one model",
        responses={404: {"model": ErrorResponse}},
    )
    async def get_model(name: str, runtime: Runtime, principal: Authenticated) -> ModelInfo:
        return describe(runtime.get(name), runtime, admin=principal.has_scope("admin"))

    @router.get("/livez", tags=["health"], summary="Process is alive", dependencies=[PUBLIC])
    async def livez() -> HealthStatus:
        # Answered on the event loop, which never runs model code: a busy model cannot delay it.
        return HealthStatus(status="ok")

    @router.get(
        "/readyz",
        tags=["health"],
        summary="Every model is ready",
        responses={
            503: {
                "model": HealthStatus,
                "description": "Not every model is ready",
                "headers": {
                    "Retry-After": {
                        "description": "Seconds to wait before asking again",
                        "schema": {"type": "integer"},
                    }
                },
            }
        },
        dependencies=[PUBLIC],
    )
    async def readyz(runtime: Runtime) -> Response:
        models = {m.name: m.primary.status.value for m in runtime.models() if m.primary is not None}
        ok = runtime.is_ready(any_ready=ready_when_any)
        body = HealthStatus(status="ok" if ok else "unavailable", models=models)
        if ok:
            return Response(body.model_dump_json(), media_type="application/json")
        # docs/api.md promises Retry-After on every 503; the same 1 s as a model's own
        # `model_unavailable` 503 (loading or failed), which has no better estimate either.
        return Response(
            body.model_dump_json(),
            status_code=503,
            media_type="application/json",
            headers={"retry-after": READYZ_RETRY_AFTER_S},
        )

    return router


def not_found_body(request_id: str | None) -> bytes:
    """Body of a 404 for an unknown path."""
    return error_body("not_found", "Not Found", None, request_id)
