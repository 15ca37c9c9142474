"""Resumable uploads of job inputs, in parts, into the registry's artifact store.

    POST /v1/uploads                       -> {"id", "size": 0, ...}
    PUT  /v1/uploads/{id}?offset=0         body: the first bytes   -> {"size": n}
    PUT  /v1/uploads/{id}?offset=n         body: the next bytes    -> ...
    POST /v1/uploads/{id}/complete         {"sha256"?}             -> {"state": "complete"}

Each part is streamed into a content-addressed blob (hashed while written, capped while
written, nothing kept on a refusal: the registry's `BlobWriter`), then recorded at its offset.
A part must start where the upload ends (`offset` = `size`): after a broken connection the
client asks `GET /v1/uploads/{id}` where to go on, and a part sent twice is refused with
409 instead of being appended twice. The parts are never copied together: a job reads them
as one file (`inputs.PartsReader`). A file in the server's input folder (`jobs.input_dir`,
for scheduled jobs) becomes an upload the same way, in parts (`import_file`).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from modelserve.config import JobsConfig
from modelserve.db.base import utcnow
from modelserve.db.engine import Database
from modelserve.db.repos import Session
from modelserve.db.repos import jobs as repo
from modelserve.db.tables.jobs import JobUploadRow
from modelserve.errors import ConflictError, InvalidInputError, ResourceNotFoundError
from modelserve.jobs.inputs import open_parts
from modelserve.jobs.work import InputPart
from modelserve.registry.artifacts import ArtifactStore
from modelserve.registry.service import sees_everything
from modelserve.registry.uploads import pump
from modelserve.schemas.jobs import UploadPublic
from modelserve.types import Principal

HASH_PIECE = 1024 * 1024


def new_id() -> str:
    """A new object id: 32 hex digits."""
    return secrets.token_hex(16)


class JobUploads:
    """Upload sessions of one process. Owners see their own uploads; admins every one."""

    def __init__(
        self, database: Database, store: ArtifactStore, config: JobsConfig, *, part_limit: int
    ) -> None:
        self.database = database
        self.store = store
        self.config = config
        # One part is one request body: at most the HTTP body limit, whatever the setting says.
        self.max_part_bytes = min(config.max_part_bytes, part_limit)

    def public(self, row: JobUploadRow) -> UploadPublic:
        """An upload as the API shows it."""
        return UploadPublic(
            id=row.id,
            state="complete" if row.state == "complete" else "open",
            size=row.size,
            sha256=row.sha256,
            max_bytes=self.config.max_upload_bytes,
            max_part_bytes=self.max_part_bytes,
            created_at=row.created_at,
            completed_at=row.completed_at,
        )

    async def row(
        self, session: Session, principal: Principal, upload_id: str, *, lock: bool = False
    ) -> JobUploadRow:
        """The caller's upload (404 for others' and unknown ids alike)."""
        row = await repo.get_upload(session=session, upload_id=upload_id, lock=lock)
        if row is None or not (sees_everything(principal) or row.owner_id == principal.owner_id):
            raise ResourceNotFoundError(f"no upload {upload_id!r}")
        return row

    async def create(self, principal: Principal) -> UploadPublic:
        """Start an empty upload."""
        async with self.database.session() as session:
            row = await repo.create_upload(
                session=session, upload_id=new_id(), owner_id=principal.owner_id
            )
            row.created_at = utcnow()
            return self.public(row)

    async def get(self, principal: Principal, upload_id: str) -> UploadPublic:
        """Where an upload stands (its `size` is where the next part goes)."""
        async with self.database.session() as session:
            return self.public(await self.row(session, principal, upload_id))

    async def put_part(
        self, principal: Principal, upload_id: str, offset: int, chunks: AsyncIterator[bytes]
    ) -> UploadPublic:
        """Append one part at `offset`; 409 unless `offset` is where the upload ends."""
        async with self.database.session() as session:
            row = await self.row(session, principal, upload_id)
            self._check_appendable(row, offset)
        room = self.config.max_upload_bytes - offset
        if room <= 0:
            raise InvalidInputError(
                f"the upload is at its {self.config.max_upload_bytes}-byte limit"
            )
        writer = self.store.writer(max_bytes=min(self.max_part_bytes, room))
        try:
            await pump(chunks, writer.write)
            if writer.size == 0:
                raise InvalidInputError("a part needs at least one byte")
            blob = await asyncio.to_thread(writer.commit)
        finally:
            await asyncio.to_thread(writer.abort)
        async with self.database.session() as session:
            row = await self.row(session, principal, upload_id, lock=True)
            self._check_appendable(row, offset)  # again: another part may have landed meanwhile
            await repo.add_part(
                session=session, upload=row, offset=offset, size=blob.size, sha256=blob.sha256
            )
            return self.public(row)

    @staticmethod
    def _check_appendable(row: JobUploadRow, offset: int) -> None:
        if row.state == "complete":
            raise ConflictError("the upload is complete; start a new one")
        if offset != row.size:
            raise ConflictError(
                f"the next part of this upload starts at byte {row.size}, not {offset}",
                details={"size": row.size},
            )

    async def complete(
        self, principal: Principal, upload_id: str, sha256: str | None
    ) -> UploadPublic:
        """Close the upload (checking its SHA-256 when given): jobs may read it from now on."""
        async with self.database.session() as session:
            row = await self.row(session, principal, upload_id)
            if row.state == "complete":
                self._same_digest(row.sha256, sha256)
                return self.public(row)
            parts = await self.parts(session, upload_id)
        if not parts:  # a state, not a malformed request: the parts may still come
            raise ConflictError("nothing was uploaded yet: send at least one part first")
        digest = await asyncio.to_thread(self._digest, parts)
        self._same_digest(digest, sha256)
        async with self.database.session() as session:
            row = await self.row(session, principal, upload_id, lock=True)
            if row.state != "complete":
                if row.size != sum(p.size for p in parts):
                    raise ConflictError("a part arrived while completing; complete again")
                row.state, row.sha256, row.completed_at = "complete", digest, utcnow()
            return self.public(row)

    @staticmethod
    def _same_digest(actual: str | None, expected: str | None) -> None:
        if expected is not None and actual != expected:
            raise InvalidInputError(
                "the uploaded bytes do not have the SHA-256 given",
                details={"sha256": actual},
            )

    # -- files in the input folder ----------------------------------------------------------

    def input_file(self, relative: str) -> Path:
        """The file `relative` names under `jobs.input_dir`: 422 when path inputs are off or
        the path leaves the folder (a link pointing out of it too), 404 when there is none."""
        root = self.config.input_dir
        if root is None:
            raise InvalidInputError(
                "this server reads no input files: set jobs.input_dir, or upload the file"
            )
        base = root.resolve()
        path = (base / relative).resolve()
        if not path.is_relative_to(base) or path == base:
            raise InvalidInputError("the path must name a file inside the input folder")
        if not path.is_file():
            raise ResourceNotFoundError(f"no input file {relative!r}")
        return path

    async def import_file(self, principal: Principal, relative: str) -> str:
        """Copy an input-folder file into a new, completed upload of the caller's; its id.
        Its parts are content-addressed blobs: an unchanged file costs no new storage."""
        path = self.input_file(relative)
        size = path.stat().st_size
        if size > self.config.max_upload_bytes:
            raise InvalidInputError(
                f"{relative} is {size} bytes, over the {self.config.max_upload_bytes}-byte"
                " upload limit"
            )
        parts, digest = await asyncio.to_thread(self._store_file, path)
        if not parts:
            raise InvalidInputError(f"{relative} is empty")
        async with self.database.session() as session:
            row = await repo.create_upload(
                session=session, upload_id=new_id(), owner_id=principal.owner_id
            )
            for part in parts:
                await repo.add_part(
                    session=session,
                    upload=row,
                    offset=part.offset,
                    size=part.size,
                    sha256=part.sha256,
                )
            row.state, row.sha256, row.completed_at = "complete", digest, utcnow()
            return row.id

    def _store_file(self, path: Path) -> tuple[list[InputPart], str]:
        """The file as blobs of at most `max_part_bytes`, and its SHA-256. Reads stop at the
        upload limit, whatever the file grew to since it was measured."""
        digest = hashlib.sha256()
        parts: list[InputPart] = []
        offset = 0
        with path.open("rb") as handle:
            while offset < self.config.max_upload_bytes:
                room = min(self.max_part_bytes, self.config.max_upload_bytes - offset)
                piece = handle.read(room)
                if not piece:
                    break
                digest.update(piece)
                writer = self.store.writer(max_bytes=len(piece))
                try:
                    writer.write(piece)
                    blob = writer.commit()
                finally:
                    writer.abort()
                parts.append(InputPart(offset, blob.size, blob.sha256))
                offset += blob.size
        return parts, digest.hexdigest()

    async def parts(self, session: Session, upload_id: str) -> list[InputPart]:
        """The parts of an upload, in order."""
        rows = await repo.upload_parts(session=session, upload_id=upload_id)
        return [InputPart(r.offset, r.size, r.sha256) for r in rows]

    def _digest(self, parts: list[InputPart]) -> str:
        digest = hashlib.sha256()
        with open_parts(self.store, parts) as stream:
            while piece := stream.read(HASH_PIECE):
                digest.update(piece)
        return digest.hexdigest()
