"""The audit log, filtered by actor, action and time range, newest first, paged by id.

`AuditReader.list`, as GET /v1/audit: admins see every event, members the events they caused
or underwent. Pages go back with `before` (keyset paging: a page costs the same however far
back it is).
"""

from __future__ import annotations

import datetime as dt

from starlette.responses import Response

from modelserve.auth.audit import AuditEvent
from modelserve.console.pipeline import USER_NAMES, Visit
from modelserve.errors import InvalidInputError

PAGE_SIZE = 50
MAX_ID = 2**62


def _when(text: str, name: str) -> dt.datetime | None:
    """A `datetime-local` field (UTC, as the page says) as an aware datetime."""
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(f"{name}: not a date and time") from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _before(text: str) -> int | None:
    if not text.isdigit():
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None


async def audit_page(visit: Visit) -> Response:
    """GET /console/audit?actor=&event=&since=&until=&before=."""
    query = visit.request.query_params
    event = query.get("event", "")
    if event and event not in {e.value for e in AuditEvent}:
        raise InvalidInputError("unknown action")
    actor = query.get("actor", "")
    since = _when(query.get("since", ""), "from")
    until = _when(query.get("until", ""), "to")
    auth = visit.console.auth
    users = await auth.accounts.list_users(limit=USER_NAMES, offset=0) if visit.is_admin else None
    if users is not None:
        names = {user.id: user.username for user in users.data}
    else:
        names = await visit.user_names()
    page = await auth.audit_reader.list(
        actor=visit.principal,
        event=event or None,
        before_id=_before(query.get("before", "")),
        limit=PAGE_SIZE,
        by=actor[:32] or None,
        since=since,
        until=until,
    )
    filters = {
        k: v
        for k, v in (
            ("actor", actor),
            ("event", event),
            ("since", query.get("since", "")),
            ("until", query.get("until", "")),
        )
        if v
    }
    return visit.render(
        "audit.html",
        nav="audit",
        page=page,
        users=users,
        names=names,
        events=[e.value for e in AuditEvent],
        filters=filters,
    )
