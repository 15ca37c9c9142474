"""`install_console(app)`: mount the admin console's pages on a modelserve app at /console.

The console is an edge next to `http/`: its pages call the same services as the REST routes
(`modelserve.auth`, `modelserve.registry`, the runtime, observability), through one request
pipeline (`pipeline.py`). It is installed by the server's assembly (`cli/factory.server_app`)
when `console.enabled` is set; an embedding app may call `install_console` itself. It needs
authentication on: its users are the API's users.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from modelserve.config import Settings
from modelserve.console import (
    audit,
    jobs,
    keys,
    models,
    overview,
    playground,
    schedules,
    signin,
    users,
)
from modelserve.console.live import LiveStats
from modelserve.console.pipeline import Console, ConsoleNotFoundError, Visit, page
from modelserve.console.rendering import build_environment
from modelserve.console.security import CookiePolicy
from modelserve.console.session import ConsoleSessions
from modelserve.errors import ConfigError
from modelserve.http.assets import AssetFolder, asset_response
from modelserve.observability.stack import Observability

MOUNT = "/console"
ASSETS = AssetFolder("modelserve.console", "static")


class ConsoleRoute(Route):
    """A Starlette route that names itself in the scope, as FastAPI's do, so the access log
    and metrics label console requests by template (`/console/models/{name}`)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self
        await super().handle(scope, receive, send)


async def _static(request: Request) -> Response:
    return asset_response(request, (await ASSETS.table()).get(str(request.path_params["name"])))


async def _home(visit: Visit) -> Response:
    return await overview.overview(visit)


async def _missing(visit: Visit) -> Response:
    raise ConsoleNotFoundError("no such page")


def routes(mount: str = MOUNT) -> list[Route]:
    """Every console route (Starlette routes: no OpenAPI entry, no dependency solving)."""
    table: list[tuple[str, object, list[str]]] = [
        ("/login", signin.login_form, ["GET"]),
        ("/login", signin.login, ["POST"]),
        ("/logout", page(signin.logout), ["POST"]),
        ("/static/{name}", _static, ["GET"]),
        ("/", page(_home), ["GET"]),
        ("/live/overview", page(overview.overview_live, activity=False), ["GET"]),
        ("/models/{name}", page(models.model_page), ["GET"]),
        ("/models/{name}/promote", page(models.confirm_promote), ["GET"]),
        ("/models/{name}/promote", page(models.promote), ["POST"]),
        ("/models/{name}/rollback", page(models.confirm_rollback), ["GET"]),
        ("/models/{name}/rollback", page(models.rollback), ["POST"]),
        ("/models/{name}/canary", page(models.set_canary), ["POST"]),
        ("/models/{name}/playground", page(playground.playground), ["GET"]),
        ("/models/{name}/playground", page(playground.predict), ["POST"]),
        ("/keys", page(keys.keys_page), ["GET"]),
        ("/keys", page(keys.create_key), ["POST"]),
        ("/keys/{key_id}/revoke", page(keys.revoke_key), ["POST"]),
        ("/users", page(users.users_page), ["GET"]),
        ("/users", page(users.create_user), ["POST"]),
        ("/users/{user_id}", page(users.update_user), ["POST"]),
        ("/audit", page(audit.audit_page), ["GET"]),
        ("/jobs", page(jobs.jobs_page), ["GET"]),
        ("/live/jobs", page(jobs.jobs_live, activity=False), ["GET"]),
        ("/jobs/{job_id}", page(jobs.job_page), ["GET"]),
        ("/jobs/{job_id}/cancel", page(jobs.cancel_job), ["POST"]),
        ("/jobs/{job_id}/retry", page(jobs.retry_job), ["POST"]),
        ("/jobs/{job_id}/results", page(jobs.download), ["GET"]),
        ("/schedules", page(schedules.schedules_page), ["GET"]),
        ("/schedules/{schedule_id}/pause", page(schedules.pause), ["POST"]),
        ("/schedules/{schedule_id}/resume", page(schedules.resume), ["POST"]),
        ("/schedules/{schedule_id}/delete", page(schedules.confirm_delete), ["GET"]),
        ("/schedules/{schedule_id}/delete", page(schedules.delete), ["POST"]),
        # Anything else under the mount: the console's own 404 page, after the sign-in check.
        ("/{rest:path}", page(_missing), ["GET", "POST"]),
    ]
    return [
        ConsoleRoute(mount + path, endpoint, methods=methods, include_in_schema=False)  # type: ignore[arg-type]
        for path, endpoint, methods in table
    ]


def install_console(app: FastAPI, settings: Settings, *, mount: str = MOUNT) -> Console:
    """Add the console's routes to `app` (built by `create_app`, auth on); ConfigError when
    auth is off."""
    auth = getattr(app.state, "auth", None)
    if auth is None:
        raise ConfigError(
            "the console signs users in with their password: it needs auth on"
            " (unset MODELSERVE_AUTH__ENABLED=false, or MODELSERVE_CONSOLE__ENABLED=false)"
        )
    config = settings.console
    secure = config.secure_cookies if config.secure_cookies is not None else settings.mode != "dev"
    observability: Observability | None = getattr(app.state, "observability", None)
    metrics = observability.metrics if observability is not None else None
    console = Console(
        settings=settings,
        auth=auth,
        sessions=ConsoleSessions(auth, idle_timeout_s=config.idle_timeout_s),
        cookies=CookiePolicy(secure=secure, mount=mount),
        templates=build_environment(),
        assets=ASSETS,
        live=LiveStats(
            metrics, refresh=observability.refresh if observability is not None else lambda: None
        ),
        mount=mount,
    )
    app.state.console = console
    app.router.routes.extend(routes(mount))
    return console
