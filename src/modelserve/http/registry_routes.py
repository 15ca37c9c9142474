"""HTTP routes of the model registry, under `/v1/registry/...`.

Translation only: each handler names its scope (`registry:read`, `registry:write`, `admin`)
and calls one method of `modelserve.registry`, which decides visibility (others' models are
404). Uploads stream the raw request body to the artifact store; they need the larger body
limit of `RegistryConfig.max_upload_bytes` (see `UPLOADS_PATH`).
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Body, FastAPI, Path, Query, Request, Response
from starlette.requests import ClientDisconnect

from modelserve.config import Settings
from modelserve.errors import (
    ConflictError,
    InvalidInputError,
    MalformedBodyError,
    ResourceNotFoundError,
    ServiceNotFoundError,
    UnsupportedMediaError,
)
from modelserve.http.deps import AdminPrincipal, Meta, RegistryReader, RegistryWriter
from modelserve.http.error_docs import error_responses
from modelserve.http.openapi import install_openapi
from modelserve.registry.archives import ArchiveKind
from modelserve.registry.artifacts import ArtifactStore, default_store
from modelserve.registry.deployer import RegistryDeployer
from modelserve.registry.rollout import Rollouts
from modelserve.registry.service import Registry, sees_everything
from modelserve.registry.uploads import upload_archive, upload_file
from modelserve.runtime.manager import ModelRuntime
from modelserve.schemas.registry import (
    NAME_WIRE_PATTERN,
    VERSION_WIRE_PATTERN,
    AliasPublic,
    AliasUpdate,
    DeploymentPublic,
    ModelCreate,
    ModelPublic,
    ModelsPublic,
    RollbackRequest,
    ShadowRecordPublic,
    ShadowRecordsPublic,
    ShadowSummary,
    TrafficPublic,
    TrafficUpdate,
    UploadPublic,
    VersionCreate,
    VersionPublic,
    VersionsPublic,
    VersionUpdate,
)

PREFIX = "/v1/registry"
UPLOADS_PATH = f"{PREFIX}/uploads"
MAX_OFFSET = 1_000_000
MAX_SHADOW_RECORDS = 1000

# The same patterns as the bodies (`schemas/registry.py`): `registry.safety` checks them again
# with its own words, so they are declared here and not enforced twice.
Name = Annotated[
    str,
    Path(
        min_length=1,
        max_length=63,
        description="Model name.",
        json_schema_extra={"pattern": NAME_WIRE_PATTERN},
    ),
]
VersionLabel = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        description="Version label.",
        json_schema_extra={"pattern": VERSION_WIRE_PATTERN},
    ),
]
AliasName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=63,
        description="Alias name.",
        json_schema_extra={"pattern": NAME_WIRE_PATTERN},
    ),
]
Limit = Annotated[int, Query(ge=1, description="Page size; larger values are clamped.")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]

# What the registry's service layer raises (the guard's 401/403/429 and the body parser's
# 400/413 are added to every route by `http/openapi.py`).
_ERRORS = error_responses(ResourceNotFoundError, ConflictError, InvalidInputError)


def _registry(request: Request) -> Registry:
    return cast(Registry, request.app.state.registry)


def _rollouts(request: Request) -> Rollouts:
    return cast(Rollouts, request.app.state.rollouts)


def _page(request: Request, limit: int) -> int:
    return min(limit, _registry(request).config.max_page_size)


def build_registry_router() -> APIRouter:
    """Every registry route; the app's state must hold `registry` and `rollouts`."""
    router = APIRouter(prefix=PREFIX, tags=["registry"], responses=_ERRORS)

    @router.post("/models", status_code=201, summary="Register a model")
    async def create_model(
        body: ModelCreate, request: Request, principal: RegistryWriter
    ) -> ModelPublic:
        return await _registry(request).create_model(principal, body)

    @router.get("/models", summary="List models")
    async def list_models(
        request: Request, principal: RegistryReader, limit: Limit = 50, offset: Offset = 0
    ) -> ModelsPublic:
        return await _registry(request).list_models(
            principal, limit=_page(request, limit), offset=offset
        )

    @router.get("/models/{name}", summary="Describe a model")
    async def get_model(name: Name, request: Request, principal: RegistryReader) -> ModelPublic:
        return await _registry(request).get_model(principal, name)

    @router.post(
        "/uploads",
        status_code=201,
        summary="Upload an artifact file or archive",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            }
        },
    )
    async def upload(
        request: Request,
        principal: RegistryWriter,
        path: Annotated[
            str | None,
            Query(max_length=1024, description="Where the file goes inside a version."),
        ] = None,
        archive: Annotated[
            ArchiveKind | None, Query(description="Unpack the body as a zip or tar archive.")
        ] = None,
    ) -> UploadPublic:
        """Stream the raw body into the artifact store; returns each stored file's sha256.

        Send the bytes as the body (not multipart). Files are checked before they are kept:
        pickle-like content is refused unless the caller is an admin.
        """
        if (path is None) == (archive is None):
            raise InvalidInputError("give exactly one of ?path=... (a file) or ?archive=zip|tar")
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media.startswith("multipart/"):
            raise UnsupportedMediaError("send the file as the raw request body, not multipart")
        registry = _registry(request)
        allow = sees_everything(principal)
        try:
            if archive is not None:
                files = await upload_archive(
                    registry.store,
                    archive,
                    request.stream(),
                    config=registry.config,
                    allow_untrusted=allow,
                )
            else:
                assert path is not None
                stored = await upload_file(
                    registry.store,
                    path,
                    request.stream(),
                    config=registry.config,
                    allow_untrusted=allow,
                )
                files = [stored]
        except ClientDisconnect:
            # Nothing was kept; the client is gone, so this answer only reaches the log.
            raise MalformedBodyError("the upload was interrupted") from None
        return UploadPublic(files=files)

    @router.post("/models/{name}/versions", status_code=201, summary="Create a version")
    async def create_version(
        name: Name, body: VersionCreate, request: Request, principal: RegistryWriter
    ) -> VersionPublic:
        return await _registry(request).create_version(principal, name, body)

    @router.get("/models/{name}/versions", summary="List a model's versions, newest first")
    async def list_versions(
        name: Name,
        request: Request,
        principal: RegistryReader,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> VersionsPublic:
        return await _registry(request).list_versions(
            principal, name, limit=_page(request, limit), offset=offset
        )

    @router.get("/models/{name}/versions/{version}", summary="Describe a version")
    async def get_version(
        name: Name, version: VersionLabel, request: Request, principal: RegistryReader
    ) -> VersionPublic:
        return await _registry(request).get_version(principal, name, version)

    @router.patch("/models/{name}/versions/{version}", summary="Mark a version trusted (admin)")
    async def update_version(
        name: Name,
        version: VersionLabel,
        body: VersionUpdate,
        request: Request,
        principal: AdminPrincipal,
    ) -> VersionPublic:
        return await _registry(request).set_trusted(principal, name, version, body.trusted)

    @router.put("/models/{name}/aliases/{alias}", summary="Point an alias at a version")
    async def set_alias(
        name: Name,
        alias: AliasName,
        body: AliasUpdate,
        request: Request,
        principal: RegistryWriter,
        meta: Meta,
    ) -> AliasPublic:
        """Moving the served alias loads and warms the version first, then switches traffic."""
        return await _rollouts(request).set_alias(principal, name, alias, body.version, meta=meta)

    @router.delete("/models/{name}/aliases/{alias}", status_code=204, summary="Remove an alias")
    async def delete_alias(
        name: Name, alias: AliasName, request: Request, principal: RegistryWriter, meta: Meta
    ) -> Response:
        await _rollouts(request).delete_alias(principal, name, alias, meta=meta)
        return Response(status_code=204)

    @router.post("/models/{name}/rollback", summary="Move an alias back to its previous version")
    async def rollback(
        name: Name,
        request: Request,
        principal: RegistryWriter,
        meta: Meta,
        body: Annotated[RollbackRequest | None, Body()] = None,
    ) -> AliasPublic:
        alias = body.alias if body is not None else None
        return await _rollouts(request).rollback(principal, name, alias, meta=meta)

    @router.put("/models/{name}/traffic", summary="Set canary and shadow traffic")
    async def set_traffic(
        name: Name, body: TrafficUpdate, request: Request, principal: RegistryWriter, meta: Meta
    ) -> TrafficPublic:
        return await _rollouts(request).set_traffic(principal, name, body, meta=meta)

    @router.delete("/models/{name}/traffic", status_code=204, summary="Clear canary and shadow")
    async def clear_traffic(
        name: Name, request: Request, principal: RegistryWriter, meta: Meta
    ) -> Response:
        await _rollouts(request).clear_traffic(principal, name, meta=meta)
        return Response(status_code=204)

    @router.get("/models/{name}/deployment", summary="What this server process serves")
    async def deployment(
        name: Name, request: Request, principal: RegistryReader
    ) -> DeploymentPublic:
        await _registry(request).get_model(principal, name)  # 404 unless visible
        deployer: RegistryDeployer | None = getattr(request.app.state, "registry_deployer", None)
        if deployer is None:
            return DeploymentPublic(
                model=name,
                serving=False,
                traffic=None,
                versions=[],
                error="this server does not serve the registry (start it with --registry)",
            )
        return deployer.deployment(name)

    @router.get("/models/{name}/shadow", summary="Shadow comparisons of this server process")
    async def shadow_records(
        name: Name,
        request: Request,
        principal: RegistryReader,
        limit: Annotated[int, Query(ge=1)] = 100,
    ) -> ShadowRecordsPublic:
        await _registry(request).get_model(principal, name)  # 404 unless visible
        runtime: ModelRuntime = request.app.state.runtime
        try:
            records = runtime.shadow_records(name, min(limit, MAX_SHADOW_RECORDS))
        except ServiceNotFoundError:
            records = []
        data = [ShadowRecordPublic.model_validate(r, from_attributes=True) for r in records]
        diffs = [r.max_abs_diff for r in records if r.max_abs_diff is not None]
        summary = ShadowSummary(
            count=len(records),
            equal=sum(r.equal for r in records),
            errors=sum(r.error is not None for r in records),
            max_abs_diff=max(diffs) if diffs else None,
        )
        return ShadowRecordsPublic(data=data, summary=summary)

    return router


class RegistryExtension:
    """The registry's part of an app: its routes, and (with `serve`) the deployer.

        registry = RegistryExtension(settings, serve=True)
        app = create_app(settings, specs, on_startup=[registry.startup],
                         on_shutdown=[registry.shutdown])
        registry.install(app)

    On startup it builds the `Registry` on `app.state.database` and, when serving, a
    `RegistryDeployer` on `app.state.runtime` that loads what the served alias points at.
    """

    def __init__(
        self, settings: Settings, *, serve: bool, store: ArtifactStore | None = None
    ) -> None:
        self.settings = settings
        self.serve = serve
        self._store = store
        self.deployer: RegistryDeployer | None = None

    def install(self, app: FastAPI) -> None:
        """Add the `/v1/registry` routes, and make `/openapi.json` follow what is served (a
        promoted version gets its own documented paths once it is loaded)."""
        app.include_router(build_registry_router())
        install_openapi(app)

    async def startup(self, app: FastAPI) -> None:
        """Build the registry (and start serving it) on the app's database and runtime."""
        config = self.settings.registry
        store = self._store or default_store(config.artifact_dir, self.settings.data_dir)
        if self.serve:
            self.deployer = RegistryDeployer(
                app.state.database,
                app.state.runtime,
                store,
                config,
                drain_timeout_s=self.settings.server.graceful_timeout_s,
            )
        registry = Registry(app.state.database, store, config, hooks=self.deployer)
        app.state.registry = registry
        # The audit log is the auth system's (absent when auth is off: nothing to record to).
        auth = getattr(app.state, "auth", None)
        app.state.rollouts = Rollouts(registry, audit=auth.audit if auth is not None else None)
        app.state.registry_deployer = self.deployer
        if self.deployer is not None:
            await self.deployer.start()

    async def shutdown(self, app: FastAPI) -> None:
        """Stop following registry changes."""
        if self.deployer is not None:
            await self.deployer.stop()
