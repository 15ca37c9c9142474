"""The overview page: every served model with its live figures, refreshed by htmx polling.

The model list is GET /v1/models' (every served model, to any signed-in user), without its
schemas: building them for every model on every poll cost more than the rest of the page. A
model's figures are shown to those who may read its stats (`registry:read` or
`predict:<name>`, the rule of GET /v1/models/{name}/stats).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from starlette.responses import Response

from modelserve.console.live import Rates
from modelserve.console.pipeline import Visit
from modelserve.errors import PermissionDeniedError
from modelserve.http.observability_routes import stats_reader
from modelserve.runtime.manager import ModelRuntime
from modelserve.types import Principal


@dataclass(frozen=True, slots=True)
class ModelRow:
    """One line of the overview."""

    name: str
    status: str
    serving: list[str]
    queue_depth: int
    rates: Rates | None  # None: the visitor may not read this model's figures


async def may_read_stats(name: str, principal: Principal) -> bool:
    """The stats route's rule, asked without raising."""
    try:
        await stats_reader(name, principal)
    except PermissionDeniedError:
        return False
    return True


async def model_rows(visit: Visit) -> list[ModelRow]:
    """The served models as the overview shows them, by name."""
    runtime: ModelRuntime = visit.request.app.state.runtime
    live = visit.console.live
    rows = []
    for served in sorted(runtime.models(), key=lambda m: m.name):
        if served.primary is None:
            continue
        versions = runtime.versions(served.name)
        depth = sum(d.engine.queue_depth for d in versions.values() if d.engine is not None)
        readable = await may_read_stats(served.name, visit.principal)
        rows.append(
            ModelRow(
                name=served.name,
                status=served.primary.status.value,
                serving=sorted(v for v, d in versions.items() if d.status.value == "ready"),
                queue_depth=depth,
                rates=live.combined(served.name) if readable and live.enabled else None,
            )
        )
    return rows


def chart_data(visit: Visit, rows: list[ModelRow]) -> str:
    """Requests per second over time, every model the visitor may read together (JSON)."""
    if not any(row.rates is not None for row in rows):
        return ""
    times, values = visit.console.live.series(None)
    return orjson.dumps({"t": times, "series": [{"label": "req/s", "values": values}]}).decode()


async def overview(visit: Visit) -> Response:
    """GET /console/."""
    rows = await model_rows(visit)
    return visit.render("overview.html", nav="overview", rows=rows, chart=chart_data(visit, rows))


async def overview_live(visit: Visit) -> Response:
    """GET /console/live/overview: the live part alone, polled by htmx."""
    rows = await model_rows(visit)
    return visit.render("_overview_live.html", rows=rows, chart=chart_data(visit, rows))
