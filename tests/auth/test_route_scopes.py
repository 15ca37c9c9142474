"""Every route declares what it needs (`http/deps.py`): a scope, `Authenticated`, or PUBLIC."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute

from tests.auth.support import AuthClient, api_routes


def declared_scopes(dependant: Any) -> set[str]:
    found = set()
    for dependency in dependant.dependencies:
        scope = getattr(dependency.call, "required_scope", None)
        if scope is not None:
            found.add(scope)
        found |= declared_scopes(dependency)
    return found


def route_scopes(route: APIRoute, extra: list[Any]) -> set[str]:
    scopes = declared_scopes(route.dependant)
    for depends in extra:
        scope = getattr(depends.dependency, "required_scope", None)
        if scope is not None:
            scopes.add(scope)
    return scopes


# Families that declare scopes with http/deps.py; others add themselves as they adopt it.
CHECKED_FAMILIES = ("/v1/auth", "/v1/users", "/v1/keys", "/v1/audit", "/v1/models")


def test_every_auth_route_declares_its_scope(lite: AuthClient) -> None:
    routes = [(p, r, e) for p, r, e in api_routes(lite.app) if p.startswith(CHECKED_FAMILIES)]
    assert len(routes) >= 16
    undeclared = [f"{sorted(r.methods)} {p}" for p, r, e in routes if not route_scopes(r, e)]
    assert undeclared == []


def test_only_login_refresh_and_health_probes_are_public(lite: AuthClient) -> None:
    public = {
        path
        for path, route, extra in api_routes(lite.app)
        if "public" in route_scopes(route, extra)
    }
    assert public == {
        "/v1/auth/token",
        "/v1/auth/refresh",
        "/livez",
        "/readyz",
        "/v2/health/live",
        "/v2/health/ready",
    }


def test_openapi_documents_the_security_schemes(lite: AuthClient) -> None:
    _, admin = lite.user_headers("admin")
    schema = lite.client.get("/openapi.json", headers=admin).json()
    schemes = schema["components"]["securitySchemes"]
    assert {"HTTPBearer", "APIKeyHeader"} <= set(schemes)
    assert "security" in schema["paths"]["/v1/users"]["get"]
