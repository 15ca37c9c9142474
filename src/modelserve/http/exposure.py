"""What the edge shows to whom (S12, S15): docs and metrics exposure, and CORS.

`ExposureMiddleware` answers `/docs` (and everything under `/docs/`: the OAuth2 redirect page and
the vendored Swagger UI/ReDoc assets), `/redoc`, `/openapi.json` and `/metrics` as configured:
`public` passes through, `authenticated` needs a valid credential (401 otherwise), `disabled`
answers 404 as if the route did not exist. `cors_middleware` wraps an ASGI app with Starlette's
CORS only when origins are configured (off by default), never `*` with credentials.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from starlette.middleware.cors import CORSMiddleware

from modelserve.config import AuthConfig, Exposure
from modelserve.errors import AuthenticationError, ModelserveError, ResourceNotFoundError
from modelserve.http.context import REQUEST_ID_KEY, request_id_from
from modelserve.http.errors import render_error
from modelserve.types import ASGIApp, Principal, Receive, Scope, Send

DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
# Every path under these is docs too (http/docs_pages.py serves its assets from /docs/static/).
# Matching a prefix can only refuse more: a path that is not docs but starts with one (say
# `/docs/../v1/keys`, which no route matches as-is) is still refused by the policy or passed on.
DOCS_PREFIXES = ("/docs/",)
METRICS_PATHS = ("/metrics",)
CORS_HEADERS = ("authorization", "content-type", "x-api-key", "x-request-id")

Authenticate = Callable[[Sequence[tuple[bytes, bytes]]], Awaitable[Principal]]


class ExposureMiddleware:
    """Plain ASGI: applies the docs/metrics exposure policy, passes everything else through."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        docs: Exposure,
        metrics: Exposure,
        authenticate: Authenticate | None,
    ) -> None:
        self.app = app
        self.policy: dict[str, Exposure] = dict.fromkeys(DOCS_PATHS, docs)
        self.policy.update(dict.fromkeys(METRICS_PATHS, metrics))
        self.prefixes: tuple[tuple[str, Exposure], ...] = tuple(
            (prefix, docs) for prefix in DOCS_PREFIXES
        )
        self.authenticate = authenticate

    def exposure_of(self, path: str) -> Exposure | None:
        """The policy for `path`; None for paths the middleware leaves alone."""
        exposure = self.policy.get(path.rstrip("/") or "/")
        if exposure is not None:
            return exposure
        for prefix, prefixed in self.prefixes:
            if path.startswith(prefix):
                return prefixed
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exposure = self.exposure_of(scope["path"])
        if exposure is None or exposure == "public":
            await self.app(scope, receive, send)
            return
        refusal: ModelserveError | None = None
        if exposure == "disabled":
            refusal = ResourceNotFoundError("Not Found")
        elif self.authenticate is not None:
            try:
                await self.authenticate(scope["headers"])
            except AuthenticationError as exc:
                refusal = exc
        if refusal is None:
            await self.app(scope, receive, send)
            return
        request_id = scope.get(REQUEST_ID_KEY) or request_id_from(scope["headers"])
        status, headers, body = render_error(refusal, request_id)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def cors_middleware(app: ASGIApp, config: AuthConfig) -> ASGIApp:
    """`app` behind CORS for the configured origins; `app` itself when none are (the default).

    Wrap the outermost app (the one that also serves the predict fast path), so predict
    responses carry the headers too.
    """
    if not config.cors_origins:
        return app
    return CORSMiddleware(
        app,
        allow_origins=list(config.cors_origins),
        allow_credentials=config.cors_allow_credentials,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=list(CORS_HEADERS),
        expose_headers=["x-request-id", "x-model-version", "retry-after", "ratelimit-reset"],
        max_age=600,
    )
