"""OpenAPI `responses=` from the error classes a route raises, by the one table in
`http/errors.py`: the document then lists the statuses a route answers, each with the one
error body `{"error": {"code", "message", "details", "request_id"}}`."""

from __future__ import annotations

from typing import Any

from modelserve.http.errors import ERROR_TABLE
from modelserve.schemas.wire import ErrorResponse


def error_responses(*errors: type[Exception]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the error classes a route can raise, by `ERROR_TABLE`.

    Classes that share a status are one entry whose description names every code, all with the
    one error body (`ErrorResponse`), so the document lists exactly the statuses the route
    can answer with:

        @router.post(..., responses=error_responses(ConflictError, ResourceNotFoundError))
    """
    codes: dict[int, list[str]] = {}
    for klass in errors:
        status, code = _table_entry(klass)
        if code not in codes.setdefault(status, []):
            codes[status].append(code)
    return {
        status: {
            "model": ErrorResponse,
            "description": ", ".join(f"`{code}`" for code in names),
        }
        for status, names in sorted(codes.items())
    }


def _table_entry(klass: type[Exception]) -> tuple[int, str]:
    for base in klass.__mro__:
        entry = ERROR_TABLE.get(base)
        if entry is not None:
            return entry
    return 500, "internal_error"
