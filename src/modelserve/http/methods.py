"""Which methods a path answers, for the `Allow` header of a 405."""

from __future__ import annotations

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, Route


def allowed_methods(routes: list[BaseRoute], path: str) -> list[str]:
    """Every method some route answers at `path` (for `Allow` on a 405, RFC 9110 15.5.6).

    FastAPI makes one route per method and path, and Starlette's 405 names only the methods of
    the first route whose path matched: `DELETE /v1/keys/{id}` would say `Allow: GET`. Only
    reached on a 405, never on a served request.
    """
    methods: set[str] = set()
    # Route contexts: included routers stay nested in FastAPI, with their prefixes outside.
    for route in iter_route_contexts(routes):
        original = route.original_route
        if isinstance(original, Route) and route.methods and route.path_regex.match(path):
            methods |= route.methods
    return sorted(methods)
