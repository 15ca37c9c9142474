"""One request pipeline for every console page and action.

`page(handler)` wraps a handler: refuse cross-site writes (Fetch Metadata), resume the session
from its cookie (else: to the sign-in page), check the CSRF token of every state-changing
request (403), run the handler with a `Visit`, turn domain errors into HTML error pages with
the status the API's error table gives them (`http/errors.py`), set the security headers on
every response and renew the session cookie when due. Handlers only translate: each calls the
same service method as its REST twin, with the same scope (`Visit.require`, the check behind
`http/deps.require_scope`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment
from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from modelserve.auth.audit import AuditEvent, Outcome, RequestMeta
from modelserve.auth.system import AuthSystem
from modelserve.config import Settings
from modelserve.console.forms import invalid_input
from modelserve.console.live import LiveStats
from modelserve.console.rendering import AssetUrls
from modelserve.console.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    PAGE_HEADERS,
    CookiePolicy,
    cross_site,
    csrf_matches,
)
from modelserve.console.session import ConsoleSessions, Visitor
from modelserve.errors import (
    AuthenticationError,
    MalformedBodyError,
    ModelserveError,
    PermissionDeniedError,
    RateLimitedError,
    ResourceNotFoundError,
    ServiceNotFoundError,
)
from modelserve.http.assets import AssetFolder
from modelserve.http.deps import authorize, get_meta
from modelserve.http.errors import status_and_code
from modelserve.types import Principal

logger = logging.getLogger("modelserve.console")

# Multipart limits for console forms (V14): one file (the playground's raw input), few fields.
MAX_FORM_FILES = 1
MAX_FORM_FIELDS = 200
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Usernames looked up to show who did what (past it, ids are shown).
USER_NAMES = 100
USER_NAMES_KEPT = 10_000


class ConsoleNotFoundError(ResourceNotFoundError):
    """Raised when a console page does not exist for this visitor (admin pages for members)."""


@dataclass
class Console:
    """Everything the console's pages share, built once per app (`app.state.console`)."""

    settings: Settings
    auth: AuthSystem
    sessions: ConsoleSessions
    cookies: CookiePolicy
    templates: Environment
    assets: AssetFolder
    live: LiveStats
    mount: str
    # User id -> username of recent visitors. Usernames never change (there is no rename), so
    # a page need not ask the database who its visitor is each time; bounded by USER_NAMES_KEPT.
    usernames: dict[str, str] = field(default_factory=dict)

    async def username(self, principal: Principal) -> str:
        """The visitor's username (looked up once per process)."""
        known = self.usernames.get(principal.subject)
        if known is not None:
            return known
        described = await self.auth.accounts.describe(principal)
        name = described.user.username if described.user is not None else "?"
        if len(self.usernames) >= USER_NAMES_KEPT:
            self.usernames.clear()
        self.usernames[principal.subject] = name
        return name


@dataclass
class Visit:
    """One signed-in request: who, from where, and how to answer."""

    console: Console
    request: Request
    visitor: Visitor
    meta: RequestMeta
    username: str
    form: FormData | None = None
    # False once the handler ended the session (sign-out): no renewed cookie is set then.
    keep_session: bool = True

    @property
    def principal(self) -> Principal:
        """The signed-in user, with their session's scopes."""
        return self.visitor.principal

    @property
    def is_admin(self) -> bool:
        """Whether the session holds the `admin` scope."""
        return self.visitor.principal.has_scope("admin")

    @property
    def has_jobs(self) -> bool:
        """Whether this server runs batch jobs (the Jobs page exists)."""
        return getattr(self.request.app.state, "jobs", None) is not None

    @property
    def base(self) -> str:
        """The console's URL prefix (behind a proxy's root path too)."""
        return base_of(self.console, self.request)

    async def require(self, scope: str, *, hide: bool = False) -> Principal:
        """The REST twin's scope check (audited, rate limited); `hide`: a refusal is 404, as
        for pages that only admins know exist."""
        try:
            return await authorize(self.request, self.principal, scope)
        except PermissionDeniedError:
            if hide:
                raise ConsoleNotFoundError("no such page") from None
            raise

    async def user_names(self) -> dict[str, str]:
        """User id -> username, for showing who did what: every user for admins (the list
        GET /v1/users gives them), the visitor alone for members."""
        if not self.is_admin:
            return {self.principal.subject: self.username}
        users = await self.console.auth.accounts.list_users(limit=USER_NAMES, offset=0)
        return {user.id: user.username for user in users.data}

    def field(self, name: str, default: str = "") -> str:
        """A text field of the posted form."""
        value = self.form.get(name) if self.form is not None else None
        return value if isinstance(value, str) else default

    def render(self, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        """A page or fragment of the console."""
        return render(self.console, self.request, template, visit=self, status=status, **context)

    def redirect(self, path: str, **query: str) -> Response:
        """303 to a console page (after a form post: reload shows the page, not the post)."""
        url = self.base + path + (("?" + urlencode(query)) if query else "")
        return RedirectResponse(url, status_code=303)


def base_of(console: Console, request: Request) -> str:
    """The console's URL prefix for this request."""
    return str(request.scope.get("root_path", "")).rstrip("/") + console.mount


def render(
    console: Console,
    request: Request,
    template: str,
    *,
    visit: Visit | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render `template` with what every page needs (assets, the visit, the base URL)."""
    context.setdefault("nav", None)
    body = console.templates.get_template(template).render(
        visit=visit,
        base=base_of(console, request),
        assets=AssetUrls(base_of(console, request) + "/static", console.assets.load()),
        poll_s=console.settings.console.poll_interval_s,
        **context,
    )
    return HTMLResponse(body, status_code=status)


def secure(response: Response) -> Response:
    """Add the console's security headers to a response."""
    response.headers.update(PAGE_HEADERS)
    return response


Handler = Callable[[Visit], Awaitable[Response]]


def page(handler: Handler, *, activity: bool = True) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint running `handler` through the console's pipeline. `activity`:
    False for live-updating fragments, which must not keep an idle session alive."""

    async def endpoint(request: Request) -> Response:
        console: Console = request.app.state.console
        unsafe = request.method in UNSAFE_METHODS
        visit: Visit | None = None
        renewed: str | None = None
        try:
            if unsafe and cross_site(request.headers):
                return secure(_refusal(console, request, "cross-site request refused", 403))
            meta = get_meta(request)
            resumed = await console.sessions.resume(
                request.cookies.get(console.cookies.session_name), activity=activity, meta=meta
            )
            if resumed.visitor is None:
                return secure(_to_sign_in(console, request, expired=resumed.expired))
            visitor = resumed.visitor
            renewed = visitor.renewed
            form = None
            if unsafe:
                form = await request.form(max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS)
                presented = request.headers.get(CSRF_HEADER)
                if presented is None:
                    value = form.get(CSRF_FIELD)
                    presented = value if isinstance(value, str) else None
                if not csrf_matches(visitor.csrf, presented):
                    await console.auth.audit.record_detached(
                        AuditEvent.PERMISSION_DENIED,
                        actor=visitor.principal,
                        meta=meta,
                        outcome=Outcome.DENIED,
                        target_type="route",
                        target_id=f"{request.method} {request.url.path}"[:64],
                        details={"reason": "csrf"},
                    )
                    return secure(_refusal(console, request, "missing or invalid CSRF token", 403))
            username = await console.username(visitor.principal)
            visit = Visit(console, request, visitor, meta, username, form)
            try:
                response = await handler(visit)
            finally:
                if form is not None:
                    await form.close()  # uploaded files live in temporary files
        except AuthenticationError:
            response = _to_sign_in(console, request, expired=True)
            renewed = None
        except ModelserveError as exc:
            response = error_page(console, request, visit, exc)
        except ValidationError as exc:  # a schema built from form values (a Split, a body)
            response = error_page(console, request, visit, invalid_input(exc))
        except HTTPException as exc:  # Starlette's form parser: a malformed or oversized form
            response = error_page(console, request, visit, MalformedBodyError(str(exc.detail)))
        secure(response)
        if renewed is not None and (visit is None or visit.keep_session):
            response.set_cookie(
                console.cookies.session_name,
                renewed,
                **console.cookies.attributes(console.sessions.idle_timeout_s),
            )
        return response

    return endpoint


def error_page(
    console: Console, request: Request, visit: Visit | None, exc: ModelserveError
) -> Response:
    """The HTML twin of the API's error body: the same status, the message when not a 5xx."""
    if isinstance(exc, ConsoleNotFoundError | ServiceNotFoundError):
        status = 404
    else:
        status, _ = status_and_code(exc)
    if status >= 500:
        logger.exception("console request failed", exc_info=exc)
        message = "Something went wrong on the server; the server log has the details."
    else:
        message = str(exc)
    response = render(console, request, "error.html", visit=visit, status=status, message=message)
    if isinstance(exc, RateLimitedError) and exc.retry_after_s is not None:
        response.headers["retry-after"] = str(max(1, round(exc.retry_after_s)))
    return response


def _refusal(console: Console, request: Request, message: str, status: int) -> Response:
    return render(console, request, "error.html", visit=None, status=status, message=message)


def _to_sign_in(console: Console, request: Request, *, expired: bool) -> Response:
    base = base_of(console, request)
    query = {"next": request.url.path} if request.method == "GET" else {}
    if expired:
        query["expired"] = "1"
    target = base + "/login" + ("?" + urlencode(query, quote_via=quote) if query else "")
    if request.headers.get("hx-request") == "true":
        # htmx swaps responses into the page: make it navigate instead.
        response: Response = Response(status_code=200, headers={"hx-redirect": target})
    elif request.method in UNSAFE_METHODS:
        response = _refusal(console, request, "your session has ended; sign in again", 403)
    else:
        response = RedirectResponse(target, status_code=303)
    if expired:
        response.delete_cookie(console.cookies.session_name, **console.cookies.removal())
    return response
