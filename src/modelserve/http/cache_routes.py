"""`DELETE /v1/models/{name}/cache`: drop a model's cached answers (admin).

Needed rarely: answers are keyed by the version that computed them, so a new version never
serves an old one's answers and nothing needs purging on a promotion or rollback. A purge is
for what the key cannot see, such as a lookup table the model reads that changed in place
(docs/cache.md). In-process, it drops this process's answers; with Redis, every replica's.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from modelserve.cache import PredictionCache
from modelserve.http.deps import AdminPrincipal
from modelserve.runtime.manager import ModelRuntime
from modelserve.schemas.wire import ErrorResponse

# Served model names (`service/spec.py` NAME_PATTERN): the 404 below says whether it is served.
ModelName = Annotated[str, Path(min_length=1, max_length=63, description="Model name.")]


class CachePurgePublic(BaseModel):
    """What a purge dropped."""

    model: str = Field(description="The model whose answers were dropped.")
    purged: int = Field(
        description="Answers dropped: this process's (in-process cache), or every replica's"
        " in the shared Redis."
    )
    shared: bool = Field(description="True when the cache is the shared Redis.")


def build_cache_router(cache: PredictionCache) -> APIRouter:
    """The cache purge route of one app."""
    router = APIRouter()

    @router.delete(
        "/v1/models/{name}/cache",
        tags=["models"],
        summary="Drop a model's cached answers",
        responses={
            401: {"model": ErrorResponse},
            403: {"model": ErrorResponse},
            404: {"model": ErrorResponse},
            422: {"model": ErrorResponse},
            503: {"model": ErrorResponse},
        },
    )
    async def purge_cache(
        name: ModelName, request: Request, _admin: AdminPrincipal
    ) -> CachePurgePublic:
        runtime: ModelRuntime = request.app.state.runtime
        runtime.model(name)  # 404 for a name that is not served
        purged = await cache.purge(name)
        return CachePurgePublic(model=name, purged=purged, shared=cache.redis is not None)

    return router
