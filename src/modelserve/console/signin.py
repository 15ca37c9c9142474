"""Signing in and out of the console.

Sign-in runs the API's login (`SessionService.login`: its rate limits, its failures that all
look alike, its audit events) and puts the session's access token in the session cookie. The
sign-in form has no session to tie a CSRF token to, so it carries a double-submit token: a
random value in a short-lived `SameSite=Strict` cookie that the form must repeat.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from modelserve.console.pipeline import (
    MAX_FORM_FIELDS,
    Console,
    Visit,
    base_of,
    render,
    secure,
)
from modelserve.console.security import (
    CSRF_FIELD,
    LOGIN_COOKIE_MAX_AGE_S,
    cross_site,
    csrf_matches,
    new_login_token,
)
from modelserve.errors import AuthenticationError, RateLimitedError
from modelserve.http.deps import get_meta

MAX_USERNAME = 256
MAX_PASSWORD = 1024


def safe_next(console: Console, request: Request, target: str | None) -> str:
    """Where to go after signing in: a console page, never another site (open redirect)."""
    base = base_of(console, request)
    if (
        target
        and target.startswith(base + "/")
        and not target.startswith("//")
        and "\\" not in target
        and "://" not in target
    ):
        return target
    return base + "/"


def _form_page(
    console: Console, request: Request, *, status: int = 200, error: str | None = None
) -> Response:
    token = new_login_token()
    response = render(
        console,
        request,
        "login.html",
        visit=None,
        status=status,
        error=error,
        login_token=token,
        next=request.query_params.get("next", ""),
        expired=request.query_params.get("expired") == "1",
    )
    response.set_cookie(
        console.cookies.login_name, token, **console.cookies.attributes(LOGIN_COOKIE_MAX_AGE_S)
    )
    return secure(response)


async def login_form(request: Request) -> Response:
    """GET /console/login."""
    console: Console = request.app.state.console
    return _form_page(console, request)


async def login(request: Request) -> Response:
    """POST /console/login: check the double-submit token, then the API's login."""
    console: Console = request.app.state.console
    if cross_site(request.headers):
        return secure(_refused(console, request))
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    posted = form.get(CSRF_FIELD)
    expected = request.cookies.get(console.cookies.login_name)
    if expected is None or not csrf_matches(expected, posted if isinstance(posted, str) else None):
        return secure(_refused(console, request))
    username = form.get("username")
    password = form.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        return _form_page(console, request, status=422, error="Enter a username and password.")
    try:
        token = await console.sessions.sign_in(
            username[:MAX_USERNAME], password[:MAX_PASSWORD], meta=get_meta(request)
        )
    except AuthenticationError:
        return _form_page(console, request, status=401, error="Invalid username or password.")
    except RateLimitedError as exc:
        response = _form_page(
            console, request, status=429, error="Too many attempts; try again later."
        )
        response.headers["retry-after"] = str(max(1, round(exc.retry_after_s)))
        return response
    target = form.get("next")
    response = RedirectResponse(
        safe_next(console, request, target if isinstance(target, str) else None),
        status_code=303,
    )
    response.set_cookie(
        console.cookies.session_name,
        token,
        **console.cookies.attributes(console.sessions.idle_timeout_s),
    )
    response.delete_cookie(console.cookies.login_name, **console.cookies.removal())
    return secure(response)


async def logout(visit: Visit) -> Response:
    """POST /console/logout (through the pipeline: needs the session's CSRF token)."""
    console = visit.console
    await console.sessions.sign_out(visit.visitor.token, meta=visit.meta)
    response = RedirectResponse(visit.base + "/login", status_code=303)
    response.delete_cookie(console.cookies.session_name, **console.cookies.removal())
    visit.keep_session = False  # the pipeline must not set a renewed cookie on the way out
    return response


def _refused(console: Console, request: Request) -> Response:
    return render(
        console,
        request,
        "error.html",
        visit=None,
        status=403,
        message="missing or invalid CSRF token; reload the sign-in page",
    )
