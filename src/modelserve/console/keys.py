"""API keys: list, create (the key is shown once), revoke.

The same `KeyService` calls as GET/POST /v1/keys and DELETE /v1/keys/{id}: members see and
manage their own keys, admins everyone's; a key never gets a scope its owner lacks; creation
and revocation are audited by the service. A new key appears in the answer to the form's post
only (htmx swaps it into the page, whose URL stays the list's), so reloading shows the list
without it, and the response is `no-store`.
"""

from __future__ import annotations

from starlette.responses import Response

from modelserve.auth.keys import ADMIN_SCOPE
from modelserve.console.forms import parse
from modelserve.console.pipeline import Visit
from modelserve.errors import InvalidInputError, PermissionDeniedError, RateLimitedError
from modelserve.schemas.auth import ApiKeyCreate

PAGE_SIZE = 50
MAX_EXTRA_SCOPES = 16


def _offered_scopes(visit: Visit) -> list[str]:
    member = list(visit.console.settings.auth.member_scopes)
    return [ADMIN_SCOPE, *member] if visit.is_admin else member


async def _page(
    visit: Visit, *, created: object = None, error: str | None = None, status: int = 200
) -> Response:
    offset = _offset(visit)
    keys = await visit.console.auth.keys.list(
        actor=visit.principal, owner_id=None, limit=PAGE_SIZE, offset=offset
    )
    template = "keys.html"
    if visit.request.method == "POST" and visit.request.headers.get("hx-request"):
        template = "_key_created.html"
    return visit.render(
        template,
        status=status,
        nav="keys",
        keys=keys,
        offered=_offered_scopes(visit),
        created=created,
        error=error,
        offset=offset,
        page_size=PAGE_SIZE,
        # htmx swaps the answer into the form's box: the list is refreshed out of band.
        oob=template == "_key_created.html",
    )


def _offset(visit: Visit) -> int:
    try:
        return max(0, min(int(visit.request.query_params.get("offset", "0")), 1_000_000))
    except ValueError:
        return 0


async def keys_page(visit: Visit) -> Response:
    """GET /console/keys."""
    return await _page(visit)


async def create_key(visit: Visit) -> Response:
    """POST /console/keys: POST /v1/keys' service call; the key is in this answer only."""
    form = visit.form
    scopes = [s for s in (form.getlist("scopes") if form is not None else []) if isinstance(s, str)]
    extra = [s.strip() for s in visit.field("extra_scopes").split(",") if s.strip()]
    days = visit.field("expires_in_days").strip()
    try:
        body = parse(
            ApiKeyCreate,
            {
                "name": visit.field("name"),
                "scopes": [*scopes, *extra[:MAX_EXTRA_SCOPES]],
                "expires_in_days": int(days) if days.isdigit() else (days or None),
            },
        )
        created = await visit.console.auth.keys.create(body, actor=visit.principal, meta=visit.meta)
    except (InvalidInputError, PermissionDeniedError) as exc:
        return await _page(visit, error=str(exc), status=200)
    except RateLimitedError:
        return await _page(visit, error="Too many keys created; try again later.", status=200)
    return await _page(visit, created=created)


async def revoke_key(visit: Visit) -> Response:
    """POST /console/keys/{key_id}/revoke: DELETE /v1/keys/{id}'s service call."""
    key_id = str(visit.request.path_params["key_id"])
    await visit.console.auth.keys.revoke(key_id, actor=visit.principal, meta=visit.meta)
    return visit.redirect("/keys")
