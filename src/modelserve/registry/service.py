"""`Registry`: models and their immutable versions, on the database and the artifact store.

Register a model; create a version from uploaded blobs (each re-inspected from its stored
bytes) and a service class reference (imported once, to record its schemas). Authorization of
*who may call what* is the route's job (scopes); this layer decides *what a caller may see*:
their own models, or every model for admins (others' objects are 404, never 403, so existence
does not leak). Aliases, rollbacks and traffic are in `rollout.py`; `ServingHooks` is how
those reach the deployer when the registry also serves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import PurePosixPath
from typing import Protocol

from modelserve.config import RegistryConfig
from modelserve.db.engine import Database
from modelserve.db.repos import Session
from modelserve.db.repos import registry as repo
from modelserve.db.tables.registry import RegistryModelRow, RegistryVersionRow
from modelserve.errors import (
    ConflictError,
    InvalidInputError,
    PermissionDeniedError,
    ResourceNotFoundError,
)
from modelserve.registry.artifacts import ArtifactStore
from modelserve.registry.formats import ArtifactFormat, inspect_file
from modelserve.registry.loading import canonical_ref, load_service
from modelserve.registry.safety import (
    check_manifest_paths,
    check_name,
    check_service_ref,
    check_version,
    is_file_ref,
)
from modelserve.registry.views import models_public, version_public, versions_public
from modelserve.schemas.registry import (
    ModelCreate,
    ModelPublic,
    ModelsPublic,
    VersionCreate,
    VersionPublic,
    VersionsPublic,
)
from modelserve.types import Principal

MAX_AUTO_VERSION_TRIES = 100


class ServingHooks(Protocol):
    """What the registry asks of the deployer (implemented by `RegistryDeployer`)."""

    def preparing(self, name: str, versions: Sequence[str]) -> AbstractAsyncContextManager[None]:
        """Load and warm `versions` and keep them loaded while the block runs (409 on failure)."""
        ...

    async def changed(self, name: str) -> None:
        """The model's registry state changed: serve what it says now."""
        ...


def sees_everything(principal: Principal) -> bool:
    """Callers holding the `admin` scope (everyone when auth is off) see every owner's models
    and may do what only admins may (file-path services, trusted versions, pickle uploads).

    Decided by the credential's effective scopes, never by its owner's role: an admin's key
    created with `registry:write` holds no more than `registry:write` (a leaked deploy key
    must not import files off the server's disk), as `/metrics` and the user routes decide.
    """
    return principal.has_scope("admin")


def require_admin(principal: Principal, what: str) -> None:
    """PermissionDeniedError (403) unless `principal` holds the `admin` scope."""
    if not sees_everything(principal):
        raise PermissionDeniedError(f"only an admin may {what}")


class Registry:
    """Model registry operations. One instance per process; safe to share between requests."""

    def __init__(
        self,
        database: Database,
        store: ArtifactStore,
        config: RegistryConfig,
        *,
        hooks: ServingHooks | None = None,
    ) -> None:
        self.database = database
        self.store = store
        self.config = config
        self.hooks = hooks

    # -- lookups ---------------------------------------------------------------------------

    async def model_row(
        self, session: Session, principal: Principal, name: str
    ) -> RegistryModelRow:
        row = await repo.get_model(session=session, name=check_name(name))
        if row is None or not (sees_everything(principal) or row.owner_id == principal.owner_id):
            raise ResourceNotFoundError(f"no registered model named {name!r}")
        return row

    async def version_row(
        self, session: Session, model: RegistryModelRow, version: str
    ) -> RegistryVersionRow:
        row = await repo.get_version(
            session=session, model_id=model.id, version=check_version(version)
        )
        if row is None:
            raise ResourceNotFoundError(f"model {model.name!r} has no version {version!r}")
        return row

    # -- models ----------------------------------------------------------------------------

    async def create_model(self, principal: Principal, body: ModelCreate) -> ModelPublic:
        """Register a model name (409 when taken)."""
        name = check_name(body.name)
        async with self.database.session() as session:
            await repo.bump_generation(session=session)
            if await repo.get_model(session=session, name=name) is not None:
                raise ConflictError(f"a model named {name!r} already exists")
            row = await repo.create_model(
                session=session,
                name=name,
                description=body.description,
                labels=dict(body.labels),
                owner_id=principal.owner_id,
                created_by=principal.subject,
            )
            return (await models_public(session, [row], serve_alias=self.config.serve_alias))[0]

    async def list_models(self, principal: Principal, *, limit: int, offset: int) -> ModelsPublic:
        """A page of the models the caller may see, by name."""
        async with self.database.session() as session:
            rows, total = await repo.list_models(
                session=session,
                owner_id=principal.owner_id,
                all_owners=sees_everything(principal),
                limit=limit,
                offset=offset,
            )
            data = await models_public(session, rows, serve_alias=self.config.serve_alias)
        return ModelsPublic(data=data, count=total, limit=limit, offset=offset)

    async def get_model(self, principal: Principal, name: str) -> ModelPublic:
        """One model with its aliases and traffic."""
        async with self.database.session() as session:
            row = await self.model_row(session, principal, name)
            return (await models_public(session, [row], serve_alias=self.config.serve_alias))[0]

    # -- versions --------------------------------------------------------------------------

    async def create_version(
        self, principal: Principal, name: str, body: VersionCreate
    ) -> VersionPublic:
        """Create an immutable version; its class is imported to take its schemas."""
        check_name(name)
        service = check_service_ref(body.service)
        if is_file_ref(service):
            # Importing a file runs whatever it holds: only admins pick files off the disk.
            require_admin(principal, "reference a service by file path")
            service = canonical_ref(service)
        if body.trusted:
            require_admin(principal, "mark a version trusted")
        paths = check_manifest_paths(f.path for f in body.files)
        if body.version is not None:
            check_version(body.version)
        async with self.database.session() as session:  # 404 before any import
            await self.model_row(session, principal, name)
        spec = await asyncio.to_thread(load_service, service)
        files = await asyncio.to_thread(
            self._inspect_all, [(p, f.sha256) for p, f in zip(paths, body.files, strict=True)]
        )
        untrusted = [
            f for f in files if f.format in (ArtifactFormat.PICKLE, ArtifactFormat.UNKNOWN)
        ]
        if untrusted and not body.trusted:
            raise InvalidInputError(
                "these artifacts can run code when loaded, so only a version an admin marks"
                " trusted may use them: " + ", ".join(f.path for f in untrusted[:10]),
                details={"paths": [f.path for f in untrusted[:100]]},
            )
        fields = {
            "service": service,
            "framework": body.framework,
            "description": body.description,
            "metrics": dict(body.metrics),
            "labels": dict(body.labels),
            "input_schema": spec.input_schema(),
            "output_schema": spec.output_schema(),
            "trusted": body.trusted,
            "created_by": principal.subject,
        }
        async with self.database.session() as session:
            await repo.bump_generation(session=session)
            model = await self.model_row(session, principal, name)
            seq = await repo.next_seq(session=session, model_id=model.id)
            label = body.version or await self._free_label(session, model, seq)
            if await repo.get_version(session=session, model_id=model.id, version=label):
                raise ConflictError(f"model {name!r} already has a version {label!r}")
            row = await repo.create_version(
                session=session,
                model_id=model.id,
                version=label,
                seq=seq,
                fields=fields,
                files=files,
            )
            await repo.touch_model(session=session, model=model)
            return await version_public(session, model, row)

    async def _free_label(self, session: Session, model: RegistryModelRow, seq: int) -> str:
        for candidate in range(seq, seq + MAX_AUTO_VERSION_TRIES):
            if await repo.get_version(session=session, model_id=model.id, version=str(candidate)):
                continue
            return str(candidate)
        raise ConflictError("no free version number; give the version a label")

    def _inspect_all(self, files: list[tuple[PurePosixPath, str]]) -> list[repo.NewFile]:
        # Checked again from the stored bytes: a client's word about a blob is never trusted.
        checked: list[repo.NewFile] = []
        for path, sha256 in files:
            size = self.store.size(sha256)
            if size is None:
                raise InvalidInputError(
                    f"no uploaded file has sha256 {sha256}; upload {str(path)!r} first",
                    details={"path": str(path), "sha256": sha256},
                )
            with self.store.open(sha256) as stream:
                inspection = inspect_file(path, stream, size)
            checked.append(repo.NewFile(str(path), sha256, size, inspection.format.value))
        return checked

    async def list_versions(
        self, principal: Principal, name: str, *, limit: int, offset: int
    ) -> VersionsPublic:
        """A page of a model's versions, newest first."""
        async with self.database.session() as session:
            model = await self.model_row(session, principal, name)
            rows, total = await repo.list_versions(
                session=session, model_id=model.id, limit=limit, offset=offset
            )
            data = await versions_public(session, model, rows)
        return VersionsPublic(data=data, count=total, limit=limit, offset=offset)

    async def get_version(self, principal: Principal, name: str, version: str) -> VersionPublic:
        """One version with its files, schemas and aliases."""
        async with self.database.session() as session:
            model = await self.model_row(session, principal, name)
            return await version_public(
                session, model, await self.version_row(session, model, version)
            )

    async def set_trusted(
        self, principal: Principal, name: str, version: str, trusted: bool
    ) -> VersionPublic:
        """An admin marks a version's artifacts trusted (or no longer)."""
        require_admin(principal, "change whether a version is trusted")
        async with self.database.session() as session:
            await repo.bump_generation(session=session)
            model = await self.model_row(session, principal, name)
            row = await self.version_row(session, model, version)
            row.trusted = trusted
            return await version_public(session, model, row)
