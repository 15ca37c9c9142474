"""Read uploaded zip and tar archives member by member, with caps that hold against bombs (V13).

Nothing is extracted to disk here: `iter_members` yields each regular file's checked path and
its bytes in chunks, and the caller stores them. Links, devices, sparse files and encrypted
members are refused; names go through `safety.check_relative_path`. The caps count bytes as they
are decompressed, never the sizes an archive declares, so a lying header cannot get past them.
"""

from __future__ import annotations

import bz2
import enum
import gzip
import lzma
import stat
import struct
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, Any, BinaryIO, cast

from modelserve.errors import InvalidInputError
from modelserve.registry.safety import check_relative_path

CHUNK_BYTES = 1024 * 1024
# Long-name and pax headers are read into memory by tarfile: bound them.
MAX_TAR_HEADER_BYTES = 64 * 1024
MAX_ZIP_DIRECTORY_BYTES = 64 * 1024 * 1024
_ZIP_EOCD = b"PK\x05\x06"
_EOCD_SEARCH = 65536 + 22

Chunks = Iterator[bytes]


class ArchiveKind(enum.StrEnum):
    """Archive formats accepted for upload."""

    ZIP = "zip"
    TAR = "tar"


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """What one archive may unpack to."""

    max_files: int
    max_unpacked_bytes: int


def archive_kind(filename: str) -> ArchiveKind | None:
    """The archive kind a file name announces, or None for a plain file."""
    lowered = filename.lower()
    if lowered.endswith(".zip"):
        return ArchiveKind.ZIP
    if lowered.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")):
        return ArchiveKind.TAR
    return None


def _refuse(why: str) -> InvalidInputError:
    return InvalidInputError(f"archive refused: {why}", details={"reason": why})


def iter_members(
    spool: BinaryIO, kind: ArchiveKind, limits: ArchiveLimits
) -> Iterator[tuple[PurePosixPath, Chunks]]:
    """Each regular file of the archive as (checked path, its bytes in chunks), in order.

    Consume each file's chunks before asking for the next member. Raises InvalidInputError
    (422) on anything unsafe, at the point it is found.
    """
    spool.seek(0)
    if kind is ArchiveKind.ZIP:
        yield from _zip_members(spool, limits)
    else:
        yield from _tar_members(spool, limits)


class _Counter:
    """Running totals across one archive, checked on every chunk."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.files = 0
        self.entries = 0
        self.unpacked = 0
        self.names: set[str] = set()

    def entry(self) -> None:
        self.entries += 1
        # Folders count too (at twice the file cap), so a million empty entries cannot spin us.
        if self.entries > 2 * self.limits.max_files:
            raise _refuse(f"more than {2 * self.limits.max_files} entries")

    def file(self, raw_name: str) -> PurePosixPath:
        self.files += 1
        if self.files > self.limits.max_files:
            raise _refuse(f"more than {self.limits.max_files} files")
        # `tar -C dir .` names members "./file": that one prefix is conventional, not a trick.
        while raw_name.startswith("./"):
            raw_name = raw_name[2:]
        path = check_relative_path(raw_name)
        key = str(path).lower()
        if key in self.names:
            raise _refuse(f"{str(path)[:200]!r} appears twice")
        self.names.add(key)
        return path

    def stream(self, source: IO[bytes]) -> Chunks:
        while True:
            chunk = source.read(CHUNK_BYTES)
            if not chunk:
                return
            self.unpacked += len(chunk)
            if self.unpacked > self.limits.max_unpacked_bytes:
                raise _refuse(f"unpacks to more than {self.limits.max_unpacked_bytes} bytes")
            yield chunk


def _zip_members(spool: BinaryIO, limits: ArchiveLimits) -> Iterator[tuple[PurePosixPath, Chunks]]:
    _check_zip_directory(spool, limits)
    try:
        archive = zipfile.ZipFile(spool)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError):
        raise _refuse("not a readable zip file") from None
    counter = _Counter(limits)
    with archive:
        for info in archive.infolist():
            counter.entry()
            mode = info.external_attr >> 16
            file_type = stat.S_IFMT(mode)
            if file_type == stat.S_IFLNK:
                raise _refuse(f"{info.filename[:200]!r} is a symbolic link")
            if info.is_dir():
                continue
            if file_type not in (0, stat.S_IFREG):
                raise _refuse(f"{info.filename[:200]!r} is not a regular file")
            if info.flag_bits & 0x1:
                raise _refuse(f"{info.filename[:200]!r} is encrypted")
            path = counter.file(info.filename)
            try:
                member = archive.open(info)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError):
                raise _refuse(f"{info.filename[:200]!r} cannot be read") from None
            yield path, _guarded(member, counter)


def _guarded(member: IO[bytes], counter: _Counter) -> Chunks:
    # Corrupt compressed data surfaces while reading: report it as a bad archive, not a 500.
    with member:
        try:
            yield from counter.stream(member)
        except (zipfile.BadZipFile, OSError, EOFError, lzma.LZMAError, ValueError):
            raise _refuse("corrupt compressed data") from None


def _check_zip_directory(spool: BinaryIO, limits: ArchiveLimits) -> None:
    # zipfile parses the whole central directory into memory before we see one entry: read
    # the end record first and refuse directories that are too large to be honest.
    spool.seek(0, 2)
    size = spool.tell()
    spool.seek(max(0, size - _EOCD_SEARCH))
    tail = spool.read()
    at = tail.rfind(_ZIP_EOCD)
    if at < 0 or len(tail) - at < 22:
        raise _refuse("not a readable zip file")
    entries, directory_bytes = struct.unpack("<HI", tail[at + 10 : at + 16])
    if entries != 0xFFFF and entries > 2 * limits.max_files:
        raise _refuse(f"more than {2 * limits.max_files} entries")
    if directory_bytes != 0xFFFFFFFF and directory_bytes > MAX_ZIP_DIRECTORY_BYTES:
        raise _refuse("zip directory is too large")
    spool.seek(0)


class _BoundedTarInfo(tarfile.TarInfo):
    """TarInfo that refuses oversized long-name and pax headers before tarfile reads them."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> Any:
        if (
            self.type
            in (
                tarfile.XHDTYPE,
                tarfile.XGLTYPE,
                tarfile.SOLARIS_XHDTYPE,
                tarfile.GNUTYPE_LONGNAME,
                tarfile.GNUTYPE_LONGLINK,
            )
            and self.size > MAX_TAR_HEADER_BYTES
        ):
            raise tarfile.HeaderError("extended header too large")
        return super()._proc_member(tarfile_)  # type: ignore[misc]


class _Budget:
    """A read-only stream that fails once more than `limit` bytes came out of it."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self._raw = raw
        self._left = limit

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size if size >= 0 else CHUNK_BYTES)
        self._left -= len(data)
        if self._left < 0:
            raise _refuse("unpacks to more data than its caps allow")
        return data


def _decompressed(spool: BinaryIO) -> BinaryIO:
    head = spool.read(6)
    spool.seek(0)
    if head.startswith(b"\x1f\x8b"):
        return cast(BinaryIO, gzip.GzipFile(fileobj=spool, mode="rb"))
    if head.startswith(b"BZh"):
        return cast(BinaryIO, bz2.BZ2File(spool, mode="rb"))
    if head.startswith(b"\xfd7zXZ\x00"):
        return cast(BinaryIO, lzma.LZMAFile(spool, mode="rb"))
    return spool


def _tar_members(spool: BinaryIO, limits: ArchiveLimits) -> Iterator[tuple[PurePosixPath, Chunks]]:
    counter = _Counter(limits)
    # File data is capped by the counter; headers and padding get a bounded allowance on top.
    allowance = limits.max_unpacked_bytes + 2 * limits.max_files * 2048 + 1024 * 1024
    stream = _Budget(_decompressed(spool), allowance)
    try:
        # "r|" (no compression: we decompressed above) reads strictly forward, never seeking.
        archive = tarfile.open(  # noqa: SIM115  (closed by the `with` below)
            fileobj=cast(IO[bytes], stream),
            mode="r|",
            tarinfo=_BoundedTarInfo,
        )
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError):
        raise _refuse("not a readable tar file") from None
    with archive:
        while True:
            try:
                member = archive.next()
            except (tarfile.TarError, OSError, EOFError, lzma.LZMAError):
                raise _refuse("corrupt tar data") from None
            if member is None:
                return
            counter.entry()
            if member.issym() or member.islnk():
                raise _refuse(f"{member.name[:200]!r} is a link")
            if member.isdir():
                continue
            if not member.isreg() or member.issparse():
                raise _refuse(f"{member.name[:200]!r} is not a regular file")
            path = counter.file(member.name)
            source = archive.extractfile(member)
            if source is None:
                raise _refuse(f"{member.name[:200]!r} cannot be read")
            yield path, _guarded(source, counter)
