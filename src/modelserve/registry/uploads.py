"""Uploads: stream a request body into the artifact store, checking every file before it is kept.

A single file is hashed while it is written, inspected (`formats.inspect_file`) and only then
committed. An archive is spooled to a temporary file first (zip needs its directory at the end),
then unpacked member by member under the caps of `RegistryConfig` (`archives.iter_members`).
Nothing that fails a check is kept, and nothing is ever loaded or unpickled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import PurePosixPath
from typing import BinaryIO

from modelserve.config import RegistryConfig
from modelserve.errors import InvalidInputError, PayloadTooLargeError
from modelserve.registry.archives import ArchiveKind, ArchiveLimits, iter_members
from modelserve.registry.artifacts import ArtifactStore, BlobWriter
from modelserve.registry.formats import Inspection, inspect_file
from modelserve.registry.safety import check_relative_path
from modelserve.schemas.registry import UploadedFile

# Body chunks are gathered to this size before each (threaded) disk write.
WRITE_BATCH_BYTES = 1024 * 1024


async def pump(chunks: AsyncIterator[bytes], write: Callable[[bytes], None]) -> None:
    """Feed a streamed body to a blocking `write`, in batches of WRITE_BATCH_BYTES written from
    a thread (job uploads use it too)."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        if len(buffer) >= WRITE_BATCH_BYTES:
            data = bytes(buffer)
            buffer.clear()
            await asyncio.to_thread(write, data)
    if buffer:
        await asyncio.to_thread(write, bytes(buffer))


def _refuse_untrusted(path: PurePosixPath, inspection: Inspection) -> InvalidInputError:
    return InvalidInputError(
        f"artifact {str(path)!r} is refused: {inspection.needs_trust}. Save weights as"
        " safetensors, ONNX, JSON or .npz; an admin may upload such files for a version"
        " marked trusted",
        details={"path": str(path), "format": inspection.format.value},
    )


def _keep(path: PurePosixPath, writer: BlobWriter, *, allow_untrusted: bool) -> UploadedFile:
    staged = writer.staged()
    inspection = inspect_file(path, staged, writer.size)
    if inspection.needs_trust is not None and not allow_untrusted:
        raise _refuse_untrusted(path, inspection)
    blob = writer.commit()
    return UploadedFile(
        path=str(path),
        sha256=blob.sha256,
        size=blob.size,
        format=inspection.format.value,
        needs_trust=inspection.needs_trust,
    )


async def upload_file(
    store: ArtifactStore,
    path: str,
    chunks: AsyncIterator[bytes],
    *,
    config: RegistryConfig,
    allow_untrusted: bool,
) -> UploadedFile:
    """Store one file that will be `path` inside a version; 422 if its content is refused."""
    checked = check_relative_path(path)
    writer = store.writer(max_bytes=config.max_upload_bytes)
    try:
        await pump(chunks, writer.write)
        return await asyncio.to_thread(_keep, checked, writer, allow_untrusted=allow_untrusted)
    finally:
        # After a commit this only drops the (already moved) temporary file.
        await asyncio.to_thread(writer.abort)


async def upload_archive(
    store: ArtifactStore,
    kind: ArchiveKind,
    chunks: AsyncIterator[bytes],
    *,
    config: RegistryConfig,
    allow_untrusted: bool,
) -> list[UploadedFile]:
    """Store every file of a zip or tar archive; 422 on the first refused member."""
    spool = await asyncio.to_thread(store.scratch)
    try:
        written = 0

        def write(data: bytes) -> None:
            nonlocal written
            written += len(data)
            if written > config.max_upload_bytes:
                raise PayloadTooLargeError(
                    f"upload is over the {config.max_upload_bytes}-byte limit"
                )
            spool.write(data)

        await pump(chunks, write)
        return await asyncio.to_thread(
            _unpack, store, spool, kind, config, allow_untrusted=allow_untrusted
        )
    finally:
        await asyncio.to_thread(spool.close)


def _unpack(
    store: ArtifactStore,
    spool: BinaryIO,
    kind: ArchiveKind,
    config: RegistryConfig,
    *,
    allow_untrusted: bool,
) -> list[UploadedFile]:
    limits = ArchiveLimits(
        max_files=config.max_archive_files, max_unpacked_bytes=config.max_unpacked_bytes
    )
    stored: list[UploadedFile] = []
    for path, chunks in iter_members(spool, kind, limits):
        writer = store.writer(max_bytes=config.max_unpacked_bytes)
        try:
            for chunk in chunks:
                writer.write(chunk)
            stored.append(_keep(path, writer, allow_untrusted=allow_untrusted))
        finally:
            writer.abort()
    if not stored:
        raise InvalidInputError("archive refused: it holds no files")
    return stored
