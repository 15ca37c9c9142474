"""Users (admins only; for anyone else these pages do not exist: 404, and the attempt is in the
audit log as `access.denied`, as the REST twin's 403 is).

The same `AccountService` calls as GET/POST /v1/users and PATCH /v1/users/{id}: create,
disable or enable, reset a password (every session of that user ends). The password policy,
"you cannot disable yourself" and the audit events are the service's.
"""

from __future__ import annotations

from starlette.responses import Response

from modelserve.console.forms import parse
from modelserve.console.pipeline import Visit
from modelserve.errors import ConflictError, InvalidInputError
from modelserve.schemas.auth import UserCreate, UserUpdate

PAGE_SIZE = 100
NOTICES = {
    "created": "User created.",
    "disabled": "User disabled: their sessions ended and their keys are refused.",
    "enabled": "User enabled.",
    "password": "Password reset: every session of the user ended.",
}


async def _page(visit: Visit, *, error: str | None = None, status: int = 200) -> Response:
    users = await visit.console.auth.accounts.list_users(limit=PAGE_SIZE, offset=0)
    return visit.render(
        "users.html",
        status=status,
        nav="users",
        users=users,
        error=error,
        notice=NOTICES.get(visit.request.query_params.get("done", "")),
    )


async def users_page(visit: Visit) -> Response:
    """GET /console/users."""
    await visit.require("admin", hide=True)
    return await _page(visit)


async def create_user(visit: Visit) -> Response:
    """POST /console/users."""
    principal = await visit.require("admin", hide=True)
    try:
        body = parse(
            UserCreate,
            {
                "username": visit.field("username"),
                "password": visit.field("password"),
                "role": visit.field("role") or "member",
            },
        )
        await visit.console.auth.accounts.create_user(body, actor=principal, meta=visit.meta)
    except (InvalidInputError, ConflictError) as exc:
        return await _page(visit, error=str(exc), status=422)
    return visit.redirect("/users", done="created")


async def update_user(visit: Visit) -> Response:
    """POST /console/users/{user_id}: `action` is disable, enable or password."""
    principal = await visit.require("admin", hide=True)
    user_id = str(visit.request.path_params["user_id"])
    action = visit.field("action")
    data: dict[str, object]
    if action == "disable":
        data = {"is_active": False}
    elif action == "enable":
        data = {"is_active": True}
    elif action == "password":
        data = {"password": visit.field("password")}
    else:
        return await _page(visit, error="unknown action", status=422)
    try:
        body = parse(UserUpdate, data)
        await visit.console.auth.accounts.update_user(
            user_id, body, actor=principal, meta=visit.meta
        )
    except (InvalidInputError, ConflictError) as exc:
        return await _page(visit, error=str(exc), status=422)
    done = {"disable": "disabled", "enable": "enabled", "password": "password"}[action]
    return visit.redirect("/users", done=done)
