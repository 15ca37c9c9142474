"""`/metrics` and `GET /v1/models/{name}/stats`.

`/metrics` is served here only when no internal `metrics_port` is configured, and then only to
callers with the `admin` scope (S12): the exposition names every model and its traffic.
Prometheus scrapes it with an admin API key (`authorization` in its scrape config); the
recommended setup is the internal port, which this route then leaves alone (404).

Stats need `registry:read`, or `predict:<name>` for that model.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from modelserve.errors import PermissionDeniedError
from modelserve.http.deps import AdminPrincipal, CurrentPrincipal
from modelserve.observability.stack import Observability
from modelserve.observability.stats import prediction_stats
from modelserve.runtime.manager import ModelRuntime
from modelserve.schemas.stats import PredictionStatsPublic
from modelserve.schemas.wire import ErrorResponse
from modelserve.types import Principal

DEFAULT_WINDOW = "1h"
STATS_SCOPE = "registry:read"


async def stats_reader(name: str, principal: CurrentPrincipal) -> Principal:
    """The caller, when it may read `name`'s stats (registry:read or predict:<name>)."""
    if principal.has_scope(STATS_SCOPE) or principal.has_scope(f"predict:{name}"):
        return principal
    raise PermissionDeniedError(f"reading stats needs {STATS_SCOPE!r} or 'predict:{name}'")


# Read by the route-scope test: which scope a route declared.
stats_reader.required_scope = f"{STATS_SCOPE}|predict:{{name}}"  # type: ignore[attr-defined]
StatsReader = Annotated[Principal, Depends(stats_reader)]


def build_observability_router(observability: Observability) -> APIRouter:
    """The metrics and stats routes of one app."""
    router = APIRouter()

    if observability.public_metrics:

        @router.get("/metrics", include_in_schema=False)
        async def metrics(request: Request, _admin: AdminPrincipal) -> Response:
            body, content_type = observability.exposition(request.headers.get("accept"))
            return Response(body, media_type=content_type)

    @router.get(
        "/v1/models/{name}/stats",
        tags=["models"],
        summary="Traffic, latency, errors and drift of a model",
        responses={
            403: {"model": ErrorResponse},
            404: {"model": ErrorResponse},
            422: {"model": ErrorResponse},
        },
    )
    async def model_stats(
        name: str,
        request: Request,
        _reader: StatsReader,
        window: Annotated[
            str,
            Query(
                max_length=16,
                description="How far back to look: a number and s, m, h or d (1m to 30d).",
            ),
        ] = DEFAULT_WINDOW,
    ) -> PredictionStatsPublic:
        runtime: ModelRuntime = request.app.state.runtime
        runtime.model(name)  # 404 for a name that is not served
        config = observability.config
        if observability.predlog is not None:
            rate = observability.predlog.rate(name)
        else:
            rate = config.predlog_rate(name) if config.predlog_enabled else 0.0
        database = request.app.state.database
        return await prediction_stats(database, model=name, window=window, sample_rate=rate)

    return router
