"""HTTP routes of auth: login/refresh/logout, me, password, users, API keys, audit log.

Translation only: each handler names its scope (see `http/deps.py`) and calls one service
method of `modelserve.auth`, which decides visibility (others' objects are 404) and writes the
audit log. Mounted only when auth is enabled.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Query, Request, Response
from fastapi.security import OAuth2PasswordRequestForm

from modelserve.auth.guard import credential_from_headers
from modelserve.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    PermissionDeniedError,
    RateLimitedError,
    ResourceNotFoundError,
)
from modelserve.http.deps import (
    PUBLIC,
    AdminPrincipal,
    Auth,
    Authenticated,
    Meta,
)
from modelserve.http.error_docs import error_responses
from modelserve.schemas.auth import (
    MAX_PAGE,
    OBJECT_ID_PATTERN,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyListPublic,
    ApiKeyPublic,
    AuditEventPublic,
    AuditListPublic,
    PasswordChange,
    PrincipalPublic,
    RefreshRequest,
    TokenPair,
    UserCreate,
    UserListPublic,
    UserPublic,
    UserUpdate,
)

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"At most {MAX_PAGE}.")]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
ObjectId = Annotated[str, Path(pattern=OBJECT_ID_PATTERN, description="An opaque hex id.")]

# What every auth route may answer; routes add what only they raise. The guard's 401/403/429
# and the body parser's 400/413 are added where they apply by `http/openapi.py`.
_ERRORS = error_responses(
    AuthenticationError, PermissionDeniedError, ResourceNotFoundError, InvalidInputError
)
# Usernames are unique, and an admin cannot demote, disable or delete themselves.
_CONFLICT = error_responses(ConflictError)
# Login attempts and key creation have rate limits of their own (`AuthConfig`).
_LIMITED = error_responses(RateLimitedError)
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class LoginForm(OAuth2PasswordRequestForm):
    """The OAuth 2.0 password grant form, with lengths capped (no unbounded hashing input)."""

    def __init__(
        self,
        *,
        # Not nullable: a form has no null, and a client sending `grant_type=null` sent a
        # string (refused). Leaving it out means the password grant, as before.
        grant_type: Annotated[str, Form(pattern="^password$")] = "password",
        username: Annotated[str, Form(min_length=1, max_length=256)],
        password: Annotated[str, Form(min_length=1, max_length=1024)],
        scope: Annotated[str, Form(max_length=1000)] = "",
    ) -> None:
        super().__init__(grant_type=grant_type, username=username, password=password, scope=scope)


def build_auth_router() -> APIRouter:
    """Every auth route; include it in the app when auth is enabled."""
    router = APIRouter(responses=_ERRORS)

    @router.post(
        "/v1/auth/token",
        tags=["auth"],
        summary="Log in",
        dependencies=[PUBLIC],
        responses=_LIMITED,
    )
    async def login(
        form: Annotated[LoginForm, Depends()], auth: Auth, meta: Meta, response: Response
    ) -> TokenPair:
        """OAuth 2.0 password grant: a short-lived access token and a refresh token."""
        response.headers.update(_NO_STORE)
        return await auth.sessions.login(form.username, form.password, meta=meta)

    @router.post("/v1/auth/refresh", tags=["auth"], summary="Refresh tokens", dependencies=[PUBLIC])
    async def refresh(
        body: RefreshRequest, auth: Auth, meta: Meta, response: Response
    ) -> TokenPair:
        """A new token pair; the refresh token sent stops working (rotation)."""
        response.headers.update(_NO_STORE)
        return await auth.sessions.refresh(body.refresh_token, meta=meta)

    @router.post("/v1/auth/logout", tags=["auth"], summary="Log out", status_code=204)
    async def logout(request: Request, _: Authenticated, auth: Auth, meta: Meta) -> None:
        """End this login session: its access and refresh tokens stop working."""
        credential = credential_from_headers(request.scope["headers"])
        if credential is None:
            raise AuthenticationError("credentials required")
        await auth.sessions.logout(credential, meta=meta)

    @router.get("/v1/auth/me", tags=["auth"], summary="Who am I")
    async def me(principal: Authenticated, auth: Auth) -> PrincipalPublic:
        """The caller's identity, role and scopes."""
        return await auth.accounts.describe(principal)

    @router.post("/v1/auth/password", tags=["auth"], summary="Change my password", status_code=204)
    async def change_password(
        body: PasswordChange, principal: Authenticated, auth: Auth, meta: Meta
    ) -> None:
        """Change your password; every session of yours ends (log in again)."""
        await auth.accounts.change_password(body, actor=principal, meta=meta)

    @router.get("/v1/users", tags=["users"], summary="List users")
    async def list_users(
        _: AdminPrincipal, auth: Auth, limit: Limit = 50, offset: Offset = 0
    ) -> UserListPublic:
        """Every user, oldest first (admins)."""
        return await auth.accounts.list_users(limit=limit, offset=offset)

    @router.post(
        "/v1/users", tags=["users"], summary="Create a user", status_code=201, responses=_CONFLICT
    )
    async def create_user(
        body: UserCreate, principal: AdminPrincipal, auth: Auth, meta: Meta
    ) -> UserPublic:
        """Add a user (admins)."""
        return await auth.accounts.create_user(body, actor=principal, meta=meta)

    @router.get("/v1/users/{user_id}", tags=["users"], summary="Show a user")
    async def get_user(
        user_id: ObjectId, principal: Authenticated, auth: Auth, meta: Meta
    ) -> UserPublic:
        """Yourself, or anyone for admins."""
        return await auth.accounts.get_user(user_id, actor=principal, meta=meta)

    @router.patch(
        "/v1/users/{user_id}", tags=["users"], summary="Change a user", responses=_CONFLICT
    )
    async def update_user(
        user_id: ObjectId, body: UserUpdate, principal: AdminPrincipal, auth: Auth, meta: Meta
    ) -> UserPublic:
        """Role, disable/enable, password reset (admins). Disabling ends the user's sessions."""
        return await auth.accounts.update_user(user_id, body, actor=principal, meta=meta)

    @router.delete(
        "/v1/users/{user_id}",
        tags=["users"],
        summary="Delete a user",
        status_code=204,
        responses=_CONFLICT,
    )
    async def delete_user(
        user_id: ObjectId, principal: AdminPrincipal, auth: Auth, meta: Meta
    ) -> None:
        """Delete a user and their keys (admins)."""
        await auth.accounts.delete_user(user_id, actor=principal, meta=meta)

    @router.get("/v1/keys", tags=["keys"], summary="List API keys")
    async def list_keys(
        principal: Authenticated,
        auth: Auth,
        owner_id: Annotated[str | None, Query(pattern=OBJECT_ID_PATTERN)] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> ApiKeyListPublic:
        """Your keys; admins: everyone's, or one owner's."""
        return await auth.keys.list(actor=principal, owner_id=owner_id, limit=limit, offset=offset)

    @router.post(
        "/v1/keys",
        tags=["keys"],
        summary="Create an API key",
        status_code=201,
        responses=_LIMITED,
    )
    async def create_key(
        body: ApiKeyCreate, principal: Authenticated, auth: Auth, meta: Meta, response: Response
    ) -> ApiKeyCreated:
        """A new key, shown this once in `key`: store it now."""
        response.headers.update(_NO_STORE)
        return await auth.keys.create(body, actor=principal, meta=meta)

    @router.get("/v1/keys/{key_id}", tags=["keys"], summary="Show an API key")
    async def get_key(
        key_id: ObjectId, principal: Authenticated, auth: Auth, meta: Meta
    ) -> ApiKeyPublic:
        """One of your keys (admins: any)."""
        return await auth.keys.get(key_id, actor=principal, meta=meta)

    @router.delete("/v1/keys/{key_id}", tags=["keys"], summary="Revoke an API key", status_code=204)
    async def revoke_key(
        key_id: ObjectId, principal: Authenticated, auth: Auth, meta: Meta
    ) -> None:
        """Revoke a key: refused everywhere within a second."""
        await auth.keys.revoke(key_id, actor=principal, meta=meta)

    @router.get("/v1/audit", tags=["audit"], summary="Query the audit log")
    async def list_audit(
        principal: Authenticated,
        auth: Auth,
        event: Annotated[str | None, Query(pattern=r"^[a-z_.]{1,40}$")] = None,
        before_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
        limit: Limit = 50,
    ) -> AuditListPublic:
        """Newest first. Admins see every event; members the events they caused or underwent."""
        return await auth.audit_reader.list(
            actor=principal, event=event, before_id=before_id, limit=limit
        )

    @router.get("/v1/audit/{event_id}", tags=["audit"], summary="Show an audit event")
    async def get_audit_event(
        event_id: Annotated[int, Path(ge=1, le=2**62)], principal: Authenticated, auth: Auth
    ) -> AuditEventPublic:
        """One event the caller may see."""
        return await auth.audit_reader.get(event_id, actor=principal)

    return router
