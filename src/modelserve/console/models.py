"""A model's page, and its rollout actions: promote, roll back, canary share.

Read from the services behind GET /v1/models/{name} (what this process serves),
/v1/registry/models/{name}[/versions] (the registry, `registry:read`; a member sees their own
models only), the shadow buffer of this process, the live metrics and, when the prediction
log samples the model, GET /v1/models/{name}/stats' analysis. Actions call `Rollouts` with
`registry:write`, as PUT .../aliases/{alias}, POST .../rollback and PUT .../traffic do, and
each lands in the audit log with the user. Promote and rollback go through a confirmation
page first.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

import orjson
from starlette.responses import Response

from modelserve.console.overview import may_read_stats
from modelserve.console.pipeline import ConsoleNotFoundError, Visit
from modelserve.errors import InvalidInputError, ResourceNotFoundError, ServiceNotFoundError
from modelserve.http.routes import describe
from modelserve.observability.stack import Observability
from modelserve.observability.stats import prediction_stats
from modelserve.registry.rollout import AliasMove, Rollouts
from modelserve.registry.service import Registry
from modelserve.runtime.manager import ModelRuntime
from modelserve.schemas.registry import ModelPublic, Split, TrafficUpdate, VersionsPublic

SHADOW_ROWS = 20
HISTORY_ROWS = 20
VERSION_ROWS = 20
STATS_WINDOW = "1h"

NOTICES = {
    "promoted": "Promoted: the version is loaded and takes the traffic.",
    "rolled_back": "Rolled back to the previous version.",
    "traffic": "Traffic split updated.",
}


def _name(visit: Visit) -> str:
    return str(visit.request.path_params["name"])


def _registry(visit: Visit) -> Registry:
    registry: Registry = visit.request.app.state.registry
    return registry


def _rollouts(visit: Visit) -> Rollouts:
    rollouts: Rollouts = visit.request.app.state.rollouts
    return rollouts


async def _registered(visit: Visit, name: str) -> ModelPublic | None:
    """The registry's record of the model, when the visitor may see it (else None)."""
    if not visit.principal.has_scope("registry:read"):
        return None
    await visit.require("registry:read")
    try:
        return await _registry(visit).get_model(visit.principal, name)
    except ResourceNotFoundError:
        return None


async def model_page(visit: Visit) -> Response:
    """GET /console/models/{name}."""
    name = _name(visit)
    runtime: ModelRuntime = visit.request.app.state.runtime
    info = None
    with contextlib.suppress(ServiceNotFoundError):
        info = describe(runtime.get(name), runtime, admin=visit.is_admin)
    model = await _registered(visit, name)
    if info is None and model is None:
        raise ConsoleNotFoundError(f"no model named {name!r}")
    versions: VersionsPublic | None = None
    history: list[AliasMove] = []
    if model is not None:
        # Independent reads, each in its own session: side by side, the page waits for the
        # slowest instead of their sum.
        versions, history = await asyncio.gather(
            _registry(visit).list_versions(visit.principal, name, limit=VERSION_ROWS, offset=0),
            _rollouts(visit).history(visit.principal, name, limit=HISTORY_ROWS),
        )
    readable = info is not None and await may_read_stats(name, visit.principal)
    live = visit.console.live
    rates = {}
    chart = ""
    stats = None
    shadow: list[Any] = []
    if info is not None and readable:
        shadow = runtime.shadow_records(name, SHADOW_ROWS)
        if live.enabled:
            rates = live.rates(name, [v.version for v in info.versions])
            times, values = live.series(name)
            chart = orjson.dumps(
                {"t": times, "series": [{"label": "req/s", "values": values}]}
            ).decode()
        stats = await _logged_stats(visit, name)
    return visit.render(
        "model.html",
        names=await visit.user_names() if history else {},
        nav="overview",
        name=name,
        info=info,
        model=model,
        versions=versions,
        history=history,
        rates=rates,
        chart=chart,
        stats=stats,
        shadow=shadow,
        shadow_summary=_shadow_summary(shadow),
        serve_alias=_registry(visit).config.serve_alias,
        can_write=visit.principal.has_scope("registry:write") and model is not None,
        notice=NOTICES.get(visit.request.query_params.get("done", "")),
    )


async def _logged_stats(visit: Visit, name: str) -> Any:
    observability: Observability | None = getattr(visit.request.app.state, "observability", None)
    if observability is None or observability.predlog is None:
        return None
    rate = observability.predlog.rate(name)
    if rate <= 0:
        return None
    database = visit.request.app.state.database
    return await prediction_stats(database, model=name, window=STATS_WINDOW, sample_rate=rate)


def _shadow_summary(records: list[Any]) -> dict[str, Any]:
    diffs = [r.max_abs_diff for r in records if r.max_abs_diff is not None]
    return {
        "count": len(records),
        "equal": sum(r.equal for r in records),
        "errors": sum(r.error is not None for r in records),
        "max_abs_diff": max(diffs) if diffs else None,
    }


# -- promote and roll back, each with a confirmation page -----------------------------------


async def confirm_promote(visit: Visit) -> Response:
    """GET /console/models/{name}/promote?version=V: what will happen, and a button."""
    name = _name(visit)
    await visit.require("registry:write")
    version = visit.request.query_params.get("version", "")
    found = await _registry(visit).get_version(visit.principal, name, version)
    model = await _registry(visit).get_model(visit.principal, name)
    alias = _registry(visit).config.serve_alias
    return visit.render(
        "confirm.html",
        nav="overview",
        name=name,
        action="promote",
        version=found.version,
        current=model.aliases.get(alias),
        alias=alias,
    )


async def promote(visit: Visit) -> Response:
    """POST /console/models/{name}/promote: move the served alias (PUT .../aliases/{alias})."""
    name = _name(visit)
    principal = await visit.require("registry:write")
    alias = _registry(visit).config.serve_alias
    version = visit.field("version")
    await _rollouts(visit).set_alias(principal, name, alias, version, meta=visit.meta)
    return visit.redirect(f"/models/{name}", done="promoted")


async def confirm_rollback(visit: Visit) -> Response:
    """GET /console/models/{name}/rollback: where the alias will go back to, and a button."""
    name = _name(visit)
    await visit.require("registry:write")
    alias = _registry(visit).config.serve_alias
    model = await _registry(visit).get_model(visit.principal, name)
    history = await _rollouts(visit).history(visit.principal, name, limit=HISTORY_ROWS)
    undoable = (m for m in history if m.alias == alias and m.kind == "set" and not m.undone)
    target = next((m.previous_version for m in undoable), None)
    return visit.render(
        "confirm.html",
        nav="overview",
        name=name,
        action="rollback",
        version=target,
        current=model.aliases.get(alias),
        alias=alias,
    )


async def rollback(visit: Visit) -> Response:
    """POST /console/models/{name}/rollback (POST .../rollback)."""
    name = _name(visit)
    principal = await visit.require("registry:write")
    await _rollouts(visit).rollback(principal, name, None, meta=visit.meta)
    return visit.redirect(f"/models/{name}", done="rolled_back")


# -- canary share ----------------------------------------------------------------------------


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidInputError("the canary share must be a number from 0 to 100") from None
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise InvalidInputError("the canary share must be a number from 0 to 100")
    return value


async def set_canary(visit: Visit) -> Response:
    """POST /console/models/{name}/canary: one version's canary share (PUT .../traffic); the
    other canaries, stickiness and the shadow stay as they are."""
    name = _name(visit)
    principal = await visit.require("registry:write")
    version = visit.field("version")
    percent = _percent(visit.field("percent"))
    model = await _registry(visit).get_model(principal, name)
    current = model.traffic
    others = [s for s in (current.canary if current else []) if s.version != version]
    canary = [*others, *([Split(version=version, percent=percent)] if percent > 0 else [])]
    shadow = current.shadow if current else None
    rollouts = _rollouts(visit)
    if not canary and shadow is None:
        await rollouts.clear_traffic(principal, name, meta=visit.meta)
    else:
        update = TrafficUpdate(
            canary=canary, sticky=current.sticky if current else False, shadow=shadow
        )
        await rollouts.set_traffic(principal, name, update, meta=visit.meta)
    return visit.redirect(f"/models/{name}", done="traffic")
