"""Where artifact bytes live: the `ArtifactStore` seam, a local directory, and an in-memory fake.

Blobs are content-addressed by SHA-256: a file uploaded twice is stored once, and a blob never
changes after it is written. Writes stream through `BlobWriter` (hashed while written, visible
only once complete: written to a temporary file, then linked into place), so a crash or a
refused upload never leaves half a blob behind. A version's files are *materialized* as a
read-only directory (hard links to the blobs where the file system allows) that the service's
`setup` reads from `self.artifacts`.

All methods block (file I/O): async callers run them in a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

from modelserve.errors import PayloadTooLargeError, ResourceNotFoundError
from modelserve.registry.safety import (
    check_name,
    check_relative_path,
    check_version,
    resolve_inside,
)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
READ_ONLY = 0o444


@dataclass(frozen=True, slots=True)
class Blob:
    """One stored file's identity: its SHA-256 (hex) and size in bytes."""

    sha256: str
    size: int


class BlobWriter(Protocol):
    """One blob being written. `commit` makes it visible; `abort` (or no commit) discards it."""

    @property
    def size(self) -> int:
        """Bytes written so far."""
        ...

    def write(self, data: bytes) -> None:
        """Append bytes; raises PayloadTooLargeError past the writer's limit."""
        ...

    def staged(self) -> BinaryIO:
        """A readable, seekable view of what was written, to inspect before committing."""
        ...

    def commit(self) -> Blob:
        """Store the blob (once per content) and return its identity."""
        ...

    def abort(self) -> None:
        """Discard what was written."""
        ...


class ArtifactStore(Protocol):
    """Content-addressed storage of artifact files."""

    def writer(self, *, max_bytes: int) -> BlobWriter:
        """Start writing one blob of at most `max_bytes`."""
        ...

    def open(self, sha256: str) -> BinaryIO:
        """Read a stored blob; ResourceNotFoundError when there is none."""
        ...

    def size(self, sha256: str) -> int | None:
        """The blob's size, or None when it is not stored."""
        ...

    def scratch(self) -> BinaryIO:
        """A temporary seekable file for spooling an upload; deleted when closed."""
        ...

    def materialize(self, model: str, version: str, files: Mapping[PurePosixPath, str]) -> Path:
        """A read-only directory holding `files` (path -> sha256) for one version."""
        ...

    def stored(self) -> Iterator[StoredBlob]:
        """Every stored blob with its size and when it was last written (for retention)."""
        ...

    def delete_if_older(self, sha256: str, before: float) -> int:
        """Remove a blob last written before `before` (a Unix time); the bytes freed, 0 when
        it is younger (written again meanwhile) or gone."""
        ...


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """A blob as the store holds it: digest, size, and last write (Unix time)."""

    sha256: str
    size: int
    written_at: float


def check_digest(sha256: str) -> str:
    """A lowercase hex SHA-256, or ResourceNotFoundError (a malformed one names no blob)."""
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise ResourceNotFoundError("no such blob", details={"sha256": str(sha256)[:80]})
    return sha256


def manifest_digest(files: Mapping[PurePosixPath, str]) -> str:
    """A short digest of a file list, naming one materialized directory."""
    text = "\n".join(
        f"{path}\t{sha}" for path, sha in sorted((str(p), s) for p, s in files.items())
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _FileWriter:
    def __init__(self, store: LocalArtifactStore, max_bytes: int) -> None:
        self._store = store
        self._max = max_bytes
        self._hash = hashlib.sha256()
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="blob-", suffix=".part")
        self._path = Path(name)
        self._file = os.fdopen(fd, "w+b")
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes) -> None:
        if self._size + len(data) > self._max:
            raise PayloadTooLargeError(f"upload is over the {self._max}-byte limit")
        self._file.write(data)
        self._hash.update(data)
        self._size += len(data)

    def staged(self) -> BinaryIO:
        self._file.flush()
        self._file.seek(0)
        return self._file

    def commit(self) -> Blob:
        blob = Blob(self._hash.hexdigest(), self._size)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        final = self._store.blob_path(blob.sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self._path, READ_ONLY)
        try:
            # link, not rename: an existing blob with the same content is never replaced.
            os.link(self._path, final)
        except FileExistsError:
            # Written again: it is young again, so a retention sweep (which only removes
            # unreferenced blobs older than its grace) leaves it to the row about to name it.
            with contextlib.suppress(OSError):
                os.utime(final)
        finally:
            self._path.unlink(missing_ok=True)
        return blob

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self._path.unlink(missing_ok=True)


class LocalArtifactStore:
    """Blobs under `<root>/blobs/sha256/ab/<digest>`, versions under `<root>/versions/`."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.tmp_dir = self.root / "tmp"
        for folder in (self.root / "blobs" / "sha256", self.root / "versions", self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)

    def blob_path(self, sha256: str) -> Path:
        """Where a blob lives (whether or not it exists)."""
        check_digest(sha256)
        return self.root / "blobs" / "sha256" / sha256[:2] / sha256

    def writer(self, *, max_bytes: int) -> BlobWriter:
        return _FileWriter(self, max_bytes)

    def open(self, sha256: str) -> BinaryIO:
        try:
            return self.blob_path(sha256).open("rb")
        except FileNotFoundError:
            raise ResourceNotFoundError("no such blob", details={"sha256": sha256}) from None

    def size(self, sha256: str) -> int | None:
        try:
            return self.blob_path(sha256).stat().st_size
        except (FileNotFoundError, ResourceNotFoundError):
            return None

    def scratch(self) -> BinaryIO:
        return tempfile.TemporaryFile(dir=self.tmp_dir, prefix="upload-")

    def stored(self) -> Iterator[StoredBlob]:
        for shard in sorted((self.root / "blobs" / "sha256").iterdir()):
            if not shard.is_dir():
                continue
            for path in shard.iterdir():
                if not _SHA256.match(path.name):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    stat = path.stat()
                    yield StoredBlob(path.name, stat.st_size, stat.st_mtime)

    def delete_if_older(self, sha256: str, before: float) -> int:
        path = self.blob_path(sha256)
        try:
            # Stat again right before the unlink: a blob written again since it was listed
            # (os.utime in commit) is young and stays.
            stat = path.stat()
            if stat.st_mtime >= before:
                return 0
            path.unlink()
        except FileNotFoundError:
            return 0
        return stat.st_size

    def materialize(self, model: str, version: str, files: Mapping[PurePosixPath, str]) -> Path:
        versions = self.root / "versions"
        folder = PurePosixPath(check_name(model), check_version(version), manifest_digest(files))
        final = resolve_inside(versions, folder)
        if final.is_dir():
            return final
        staging = Path(tempfile.mkdtemp(dir=self.tmp_dir, prefix="version-"))
        try:
            for path, sha256 in files.items():
                target = resolve_inside(staging, check_relative_path(str(path)))
                target.parent.mkdir(parents=True, exist_ok=True)
                source = self.blob_path(sha256)
                if not source.is_file():
                    raise ResourceNotFoundError(
                        f"artifact {str(path)!r} is missing from the store",
                        details={"path": str(path), "sha256": sha256},
                    )
                try:
                    os.link(source, target)
                except OSError:  # another file system, or links not supported
                    shutil.copyfile(source, target)
                    os.chmod(target, READ_ONLY)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                staging.rename(final)
            except OSError:
                # Another process materialized the same version first: theirs is identical.
                if not final.is_dir():
                    raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return final


class _MemoryWriter:
    def __init__(self, store: MemoryArtifactStore, max_bytes: int) -> None:
        self._store = store
        self._max = max_bytes
        self._buffer = io.BytesIO()

    @property
    def size(self) -> int:
        return self._buffer.tell() if not self._buffer.closed else 0

    def write(self, data: bytes) -> None:
        if self._buffer.tell() + len(data) > self._max:
            raise PayloadTooLargeError(f"upload is over the {self._max}-byte limit")
        self._buffer.write(data)

    def staged(self) -> BinaryIO:
        return io.BytesIO(self._buffer.getvalue())

    def commit(self) -> Blob:
        data = self._buffer.getvalue()
        blob = Blob(hashlib.sha256(data).hexdigest(), len(data))
        with self._store.lock:
            self._store.blobs.setdefault(blob.sha256, data)
            self._store.written[blob.sha256] = time.time()
        return blob

    def abort(self) -> None:
        self._buffer = io.BytesIO()


class MemoryArtifactStore:
    """Blobs in a dict, for tests. Materialized versions go to a private temporary folder."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        # Last write per blob (Unix time), as a file's mtime in the local store.
        self.written: dict[str, float] = {}
        self.lock = threading.Lock()
        self._folder: Path | None = None

    def writer(self, *, max_bytes: int) -> BlobWriter:
        return _MemoryWriter(self, max_bytes)

    def open(self, sha256: str) -> BinaryIO:
        data = self.blobs.get(check_digest(sha256))
        if data is None:
            raise ResourceNotFoundError("no such blob", details={"sha256": sha256})
        return io.BytesIO(data)

    def size(self, sha256: str) -> int | None:
        data = self.blobs.get(sha256)
        return None if data is None else len(data)

    def scratch(self) -> BinaryIO:
        return io.BytesIO()

    def stored(self) -> Iterator[StoredBlob]:
        with self.lock:
            items = [(sha, len(data)) for sha, data in self.blobs.items()]
        for sha, size in items:
            yield StoredBlob(sha, size, self.written.get(sha, 0.0))

    def delete_if_older(self, sha256: str, before: float) -> int:
        with self.lock:
            if self.written.get(sha256, 0.0) >= before:
                return 0
            data = self.blobs.pop(sha256, None)
        return 0 if data is None else len(data)

    def materialize(self, model: str, version: str, files: Mapping[PurePosixPath, str]) -> Path:
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="modelserve-artifacts-"))
        folder = PurePosixPath(check_name(model), check_version(version), manifest_digest(files))
        final = resolve_inside(self._folder, folder)
        for path, sha256 in files.items():
            target = resolve_inside(final, check_relative_path(str(path)))
            target.parent.mkdir(parents=True, exist_ok=True)
            with self.open(sha256) as source:
                target.write_bytes(source.read())
        return final

    def close(self) -> None:
        """Remove the materialized folders."""
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


def default_store(artifact_dir: Path | None, data_dir: Path) -> LocalArtifactStore:
    """The configured local store: `artifact_dir`, else `<data_dir>/artifacts`."""
    return LocalArtifactStore(artifact_dir if artifact_dir is not None else data_dir / "artifacts")
