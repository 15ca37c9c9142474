"""FastAPI dependencies as `Annotated` aliases, so handlers read as a sentence.

Every route declares what it needs; `tests/auth/test_route_scopes.py` fails for one that
does not (add your route family to its CHECKED_FAMILIES)::

    from modelserve.http.deps import AdminPrincipal, DbSession, Meta, require_scope

    RegistryReader = Annotated[Principal, require_scope("registry:read")]

    @router.get("/v1/things/{thing_id}")
    async def get_thing(thing_id: str, principal: RegistryReader, session: DbSession) -> Thing:
        ...  # object visibility (404 for others' objects) is the service's job

    @router.get("/v1/status", dependencies=[PUBLIC])   # deliberately open, and says so
    async def status() -> Status: ...

- `CurrentPrincipal`: any valid credential (401 otherwise). With auth disabled it is
  `modelserve.types.ANONYMOUS`, which may do everything.
- `require_scope("registry:write")` / `AdminPrincipal`: that scope, else 403 (audited).
- `DbSession`: a session of `app.state.database`, committed before the response is sent,
  rolled back on any error. `Meta`: request id and client address for the audit log.
- `Auth`: the app's `AuthSystem`.

Credentials are read from headers only; one in the query string is refused with 401 (S8).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPBearer

from modelserve.auth.audit import AuditEvent, Outcome, RequestMeta
from modelserve.auth.guard import client_address, refuse_query_credentials
from modelserve.auth.system import AuthSystem
from modelserve.db.engine import Database
from modelserve.db.repos import Session
from modelserve.errors import ConfigError, PermissionDeniedError
from modelserve.http.context import PRINCIPAL_KEY, REQUEST_ID_KEY
from modelserve.types import ANONYMOUS, Principal

# Only for the OpenAPI document ("Authorize" in /docs); credentials are parsed from the raw
# headers by `modelserve.auth.guard`, the same code the predict fast path uses.
_bearer = HTTPBearer(auto_error=False, description="An API key (ms_...) or an access token.")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (ms_...).")


def get_auth_system(request: Request) -> AuthSystem | None:
    """The app's AuthSystem, or None when auth is disabled."""
    auth: AuthSystem | None = getattr(request.app.state, "auth", None)
    return auth


def get_auth(request: Request) -> AuthSystem:
    """The app's AuthSystem (for routes that exist only with auth enabled)."""
    auth = get_auth_system(request)
    if auth is None:
        raise ConfigError("auth routes are mounted but auth is not configured")
    return auth


def get_meta(request: Request) -> RequestMeta:
    """Request id and client address, as the audit log records them."""
    auth = get_auth_system(request)
    peer = request.client.host if request.client else None
    trusted = auth.trusted_proxies if auth is not None else ()
    address = client_address(peer, request.headers.get("x-forwarded-for"), trusted)
    request_id = request.scope.get(REQUEST_ID_KEY)
    return RequestMeta(request_id if isinstance(request_id, str) else None, address)


async def get_principal(
    request: Request,
    _bearer_doc: Annotated[Any, Depends(_bearer)] = None,
    _key_doc: Annotated[Any, Depends(_api_key)] = None,
) -> Principal:
    """Who is calling: 401 (with WWW-Authenticate) unless a valid credential is presented."""
    auth = get_auth_system(request)
    if auth is None:
        return ANONYMOUS
    refuse_query_credentials(request.scope.get("query_string", b""))
    principal = await auth.guard.authenticate(request.scope["headers"])
    # For the access log and metrics, which run outside the route (http/access.py).
    request.scope[PRINCIPAL_KEY] = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require_scope(scope: str) -> Any:
    """A dependency giving the Principal when it holds `scope`, else 403 (and an audit event).

    The request also counts against the rate limit of the scope's family
    (`auth.rate_limits["registry"]` for "registry:write"), when one is configured (429).
    Use as `Annotated[Principal, require_scope("registry:write")]`.
    """

    async def check(request: Request, principal: CurrentPrincipal) -> Principal:
        return await authorize(request, principal, scope)

    _mark(check, scope)
    return Depends(check)


async def authorize(request: Request, principal: Principal, scope: str) -> Principal:
    """The check behind `require_scope`, for edges that resolve the Principal themselves (the
    console's cookie): `principal` when it holds `scope` (counted against the rate limit of
    the scope's family), else PermissionDeniedError, with an `access.denied` audit event."""
    auth = get_auth_system(request)
    family = scope.partition(":")[0]
    if principal.has_scope(scope):
        if auth is not None:
            await auth.guard.limit(principal, family, auth.policy.family(family))
        return principal
    if auth is not None:
        route = request.scope.get("route")
        auth.audit.record_soon(
            AuditEvent.PERMISSION_DENIED,
            actor=principal,
            meta=get_meta(request),
            outcome=Outcome.DENIED,
            target_type="route",
            target_id=f"{request.method} {getattr(route, 'path', '?')}"[:64],
            details={"scope": scope},
        )
    raise PermissionDeniedError(f"this operation needs the {scope!r} scope")


async def _authenticated(principal: CurrentPrincipal) -> Principal:
    return principal


async def _public() -> None:
    return None


def _mark(dependency: Callable[..., Any], scope: str) -> None:
    # Read by the route-scope test: which scope a route declared.
    dependency.required_scope = scope  # type: ignore[attr-defined]


async def _predict_guarded() -> None:
    # The predict routes authorize in the PredictGuard (`predict:<model>`), which the fast path
    # and `PredictEndpoint.respond` call before reading the body; this only declares it.
    return None


_mark(_authenticated, "authenticated")
_mark(_public, "public")
_mark(_predict_guarded, "predict:<model>")

Authenticated = Annotated[Principal, Depends(_authenticated)]
"""Any valid credential; what it may touch is decided by the service (object visibility)."""
AdminPrincipal = Annotated[Principal, require_scope("admin")]
RegistryReader = Annotated[Principal, require_scope("registry:read")]
RegistryWriter = Annotated[Principal, require_scope("registry:write")]
PUBLIC = Depends(_public)
"""`dependencies=[PUBLIC]` on a route that is open on purpose (login, health probes)."""
PREDICT_GUARDED = Depends(_predict_guarded)
"""`dependencies=[PREDICT_GUARDED]` on predict routes: the PredictGuard checks `predict:<model>`."""


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session of the app's database, committed when the route returns without error."""
    database: Database = request.app.state.database
    async with database.session() as session:
        yield session


# scope="function": the commit happens before the response is sent, so a client never sees
# a 2xx for a write that then fails to commit, nor races its own write.
DbSession = Annotated[Session, Depends(get_session, scope="function")]
Meta = Annotated[RequestMeta, Depends(get_meta)]
Auth = Annotated[AuthSystem, Depends(get_auth)]
