"""Wire contracts of users, sessions, API keys and the audit log.

Writes forbid unknown fields (S3: no mass assignment of `role`, `is_active`, `password_hash`,
`owner_id`...). No Public schema has a field for a hash or a stored secret; the only secrets
that ever leave are the ones created for the caller, once (`TokenPair`, `ApiKeyCreated`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelserve.schemas.timestamps import UtcDateTime

Role = Literal["admin", "member"]
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$"
OBJECT_ID_PATTERN = r"^[0-9a-f]{1,32}$"
# The scopes `auth.keys.parse_scopes` takes (a test keeps the two in step): the fixed ones, and
# `predict:<model>`.
SCOPE_PATTERN = (
    r"^(?:admin|predict:\*|registry:read|registry:write|jobs:read|jobs:write"
    r"|predict:[A-Za-z0-9][A-Za-z0-9._-]{0,63})$"
)
# Names are shown in lists and terminals: no control characters (NUL, escapes, newlines).
LABEL_PATTERN = r"^[^\x00-\x1f\x7f]+$"
MAX_PAGE = 100

_WRITE = ConfigDict(extra="forbid", str_strip_whitespace=False)
_READ = ConfigDict(from_attributes=True)

Password = Annotated[
    str, Field(min_length=8, max_length=128, description="8 to 128 characters, kept as typed.")
]


class UserCreate(BaseModel):
    """A new user (admins only)."""

    model_config = _WRITE

    username: str = Field(pattern=USERNAME_PATTERN, description="Case-insensitive, unique.")
    password: Password
    role: Role = "member"


class UserUpdate(BaseModel):
    """Changes an admin makes to a user; fields left out stay as they are."""

    model_config = _WRITE

    role: Role | None = None
    is_active: bool | None = Field(None, description="False disables the user at once.")
    password: str | None = Field(
        None, min_length=8, max_length=128, description="Set a new password (ends sessions)."
    )


class UserPublic(BaseModel):
    """A user as the API shows it."""

    model_config = _READ

    id: str
    username: str
    role: Role
    is_active: bool
    created_at: UtcDateTime
    password_changed_at: UtcDateTime


class UserListPublic(BaseModel):
    """A page of users."""

    data: list[UserPublic]
    count: int = Field(description="Total number of users.")
    limit: int
    offset: int


class PasswordChange(BaseModel):
    """The caller changes their own password; every session of theirs ends."""

    model_config = _WRITE

    current_password: str = Field(min_length=1, max_length=128)
    new_password: Password


class RefreshRequest(BaseModel):
    """Trade a refresh token for a new pair (the old refresh token stops working)."""

    model_config = _WRITE

    refresh_token: str = Field(min_length=1, max_length=200)


class TokenPair(BaseModel):
    """The answer to a login or refresh (OAuth 2.0 token response)."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the OAuth 2.0 token type)
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str
    refresh_expires_in: int


class ApiKeyCreate(BaseModel):
    """A new API key. Members create keys for themselves; admins may name another owner."""

    model_config = _WRITE

    name: str = Field(min_length=1, max_length=100, pattern=LABEL_PATTERN)
    scopes: list[str] = Field(
        min_length=1,
        max_length=32,
        description="predict:*, predict:<model>, registry:read, registry:write, jobs:read,"
        " jobs:write, admin",
        # Documented here, checked by `auth.keys.parse_scopes` (its error lists what is allowed).
        json_schema_extra={"items": {"type": "string", "pattern": SCOPE_PATTERN}},
    )
    expires_in_days: int | None = Field(None, ge=1, le=3650, description="Never when absent.")
    owner_id: str | None = Field(None, pattern=OBJECT_ID_PATTERN, description="Admins only.")


class ApiKeyPublic(BaseModel):
    """An API key as listed: its public prefix, never the key or its digest."""

    model_config = _READ

    id: str
    name: str
    prefix: str
    owner_id: str
    scopes: list[str]
    created_at: UtcDateTime
    expires_at: UtcDateTime | None
    last_used_at: UtcDateTime | None
    revoked_at: UtcDateTime | None


class ApiKeyCreated(ApiKeyPublic):
    """A new key, with the key itself: shown this once, store it now."""

    key: str


class ApiKeyListPublic(BaseModel):
    """A page of API keys."""

    data: list[ApiKeyPublic]
    count: int
    limit: int
    offset: int


class AuditEventPublic(BaseModel):
    """One security event."""

    model_config = _READ

    id: int
    created_at: UtcDateTime
    event: str
    outcome: str
    actor_id: str | None
    actor_kind: str
    target_type: str | None
    target_id: str | None
    request_id: str | None
    client_ip: str | None
    details: dict[str, Any] | None


class AuditListPublic(BaseModel):
    """A page of audit events, newest first; pass `next_before_id` as `before_id` for more."""

    data: list[AuditEventPublic]
    next_before_id: int | None


class PrincipalPublic(BaseModel):
    """Who the caller is."""

    kind: str
    subject: str
    role: str
    scopes: list[str]
    user: UserPublic | None = None
