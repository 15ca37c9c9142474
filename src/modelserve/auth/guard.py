"""Reading who a request is from, and the `PredictGuard` the predict fast path calls.

Credentials come only from headers: `Authorization: Bearer <key or JWT>` or `X-API-Key: <key>`.
Any other scheme (`Basic` included) is refused, as are two different credentials in one request;
bodies are never read for credentials, and a query string holding something named like one is
refused (`refuse_query_credentials`, S8). The client address for login
limits is the TCP peer, unless the peer is a configured trusted proxy, in which case the
right-most untrusted address of X-Forwarded-For is used (a client cannot spoof past a proxy).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from urllib.parse import unquote_to_bytes

from modelserve.auth.audit import NO_META, AuditEvent, AuditLog, Outcome
from modelserve.auth.principals import Authenticator
from modelserve.auth.ratelimit import NO_RULES, MemoryRateLimiter, RateLimiter, Rules, parse_rules
from modelserve.config import AuthConfig
from modelserve.errors import AuthenticationError, PermissionDeniedError
from modelserve.types import Principal

Headers = Sequence[tuple[bytes, bytes]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MISSING_CREDENTIALS = "credentials required: send `Authorization: Bearer <key or token>`"
INVALID_CREDENTIALS = "invalid or expired credentials"
MAX_CREDENTIAL_BYTES = 4096
QUERY_CREDENTIALS = "send credentials in the Authorization header, never in URLs"

# Query parameters that look like a credential: never honoured, and refused (401) so the client
# learns to stop leaking them into URLs, access logs, proxies and browser histories (S8).
CREDENTIAL_PARAMS = frozenset(
    {
        b"api_key",
        b"apikey",
        b"api-key",
        b"x-api-key",
        b"key",
        b"token",
        b"access_token",
        b"access-token",
        b"auth_token",
        b"id_token",
        b"refresh_token",
        b"jwt",
        b"bearer",
        b"auth",
        b"authorization",
    }
)


def credential_from_headers(headers: Headers) -> bytes | None:
    """The bearer credential of a request, None when there is none; AuthenticationError for a
    malformed, non-Bearer or ambiguous one."""
    authorization: bytes | None = None
    api_key: bytes | None = None
    for name, value in headers:
        if name == b"authorization":
            if authorization is not None:
                raise AuthenticationError(INVALID_CREDENTIALS)
            authorization = value
        elif name == b"x-api-key":
            if api_key is not None:
                raise AuthenticationError(INVALID_CREDENTIALS)
            api_key = value
    if authorization is not None:
        scheme, _, token = authorization.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            raise AuthenticationError(INVALID_CREDENTIALS)
        if api_key is not None and api_key.strip() != token:
            raise AuthenticationError(INVALID_CREDENTIALS)
        credential = token
    elif api_key is not None:
        credential = api_key.strip()
        if not credential:
            raise AuthenticationError(INVALID_CREDENTIALS)
    else:
        return None
    if len(credential) > MAX_CREDENTIAL_BYTES:
        raise AuthenticationError(INVALID_CREDENTIALS)
    return credential


def refuse_query_credentials(query: bytes) -> None:
    """AuthenticationError when the query string carries a parameter named like a credential.

    The one check every entry point calls (FastAPI routes, the predict endpoint and the HTTP
    protocol's fast path), whether or not a header credential is also present. Names are
    compared percent-decoded and case-folded, so `?API%5FKEY=` is refused like `?api_key=`.
    """
    if not query:
        return
    for pair in query.split(b"&"):
        name = pair.split(b"=", 1)[0]
        if b"%" in name or b"+" in name:
            name = unquote_to_bytes(name.replace(b"+", b" "))
        if name.strip().lower() in CREDENTIAL_PARAMS:
            raise AuthenticationError(QUERY_CREDENTIALS)


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Trusted proxy addresses or CIDRs."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]
) -> str | None:
    """The client's address: the peer, or what a trusted proxy says it forwarded for."""
    if peer is None or not trusted or not forwarded_for or not _inside(peer, trusted):
        return peer
    client = peer
    for hop in reversed(forwarded_for.split(",")):
        try:
            address = ipaddress.ip_address(hop.strip())
        except ValueError:
            return client  # garbage from further left is the client's own doing
        client = str(address)
        if not _inside(client, trusted):
            return client
    return client


def _inside(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


class RatePolicy:
    """Which rules apply to what, parsed once from settings."""

    def __init__(self, config: AuthConfig) -> None:
        self._families = {name: parse_rules(text) for name, text in config.rate_limits.items()}
        self._models = {name: parse_rules(text) for name, text in config.model_rate_limits.items()}
        self._predict = self._families.get("predict", NO_RULES)
        self.login = parse_rules(config.login_rate_limit)
        self.login_ip = parse_rules(config.login_ip_rate_limit)
        self.key_create = parse_rules(config.key_create_rate_limit)

    def predict(self, model: str) -> tuple[str, Rules]:
        """(counter namespace, rules) for predicting with `model`: its own rule, else the
        family's, counted over all models."""
        rules = self._models.get(model)
        if rules is not None:
            return "predict:" + model, rules
        return "predict", self._predict

    def family(self, family: str) -> Rules:
        """Rules of a scope family ("registry", ...); none when not configured."""
        return self._families.get(family, NO_RULES)


class AuthGuard:
    """The `PredictGuard`: authenticate, check `predict:<model>`, count against rate limits."""

    def __init__(
        self,
        *,
        authenticator: Authenticator,
        limiter: RateLimiter,
        policy: RatePolicy,
        audit: AuditLog,
    ) -> None:
        self._authenticator = authenticator
        self._limiter = limiter
        # The memory limiter is called without a coroutine on the hot path.
        self._memory = limiter if isinstance(limiter, MemoryRateLimiter) else None
        self._policy = policy
        self._audit = audit

    async def authenticate(self, headers: Headers) -> Principal:
        """The Principal of a request's credential; AuthenticationError when absent or bad."""
        credential = credential_from_headers(headers)
        if credential is None:
            raise AuthenticationError(MISSING_CREDENTIALS)
        return await self._authenticator.authenticate(credential)

    def check_predict_now(self, headers: list[tuple[bytes, bytes]], model: str) -> Principal | None:
        """`check_predict` without a coroutine when no I/O is needed (a cached credential, and
        no limit or the in-memory limiter): the Principal, or None to say "await
        `check_predict`". Raises exactly as `check_predict` does."""
        credential = credential_from_headers(headers)
        if credential is None:
            raise AuthenticationError(MISSING_CREDENTIALS)
        principal = self._authenticator.cached(credential)
        if principal is None:
            return None
        self._may_predict(principal, model)
        namespace, rules = self._policy.predict(model)
        if rules:
            if self._memory is None:
                return None  # a shared limiter: the awaited path counts the hit
            self._memory.check_and_hit(f"{namespace}|{principal.rate_key}", rules)
        return principal

    async def check_predict(self, headers: list[tuple[bytes, bytes]], model: str) -> Principal:
        """Who is calling, or raise why they may not predict with `model`.

        The fast path tries `check_predict_now` first and comes here when it needs I/O.
        """
        credential = credential_from_headers(headers)
        if credential is None:
            raise AuthenticationError(MISSING_CREDENTIALS)
        principal = await self._authenticator.authenticate(credential)
        self._may_predict(principal, model)
        namespace, rules = self._policy.predict(model)
        if rules:
            if self._memory is not None:
                self._memory.check_and_hit(f"{namespace}|{principal.rate_key}", rules)
            else:
                await self._limiter.hit(f"{namespace}|{principal.rate_key}", rules)
        return principal

    def _may_predict(self, principal: Principal, model: str) -> None:
        if "predict:*" in principal.scopes or principal.has_scope("predict:" + model):
            return
        self._audit.record_soon(
            AuditEvent.PERMISSION_DENIED,
            actor=principal,
            meta=NO_META,
            outcome=Outcome.DENIED,
            target_type="model",
            target_id=model[:64],
            details={"scope": "predict"},
        )
        raise PermissionDeniedError(f"this credential may not predict with {model!r}")

    async def limit(self, principal: Principal, namespace: str, rules: Rules) -> None:
        """Count one request of `principal` against `rules` (RateLimitedError when over)."""
        if not rules:
            return
        key = f"{namespace}|{principal.rate_key}"
        if self._memory is not None:
            self._memory.check_and_hit(key, rules)
        else:
            await self._limiter.hit(key, rules)
