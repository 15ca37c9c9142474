"""V13: archives unpack member by member under caps; links, devices and traversal are refused."""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile

import pytest

from modelserve.errors import InvalidInputError
from modelserve.registry.archives import (
    ArchiveKind,
    ArchiveLimits,
    archive_kind,
    iter_members,
)
from tests.registry.files import tar_bytes, zip_bytes

LIMITS = ArchiveLimits(max_files=10, max_unpacked_bytes=1024 * 1024)


def unpack(data: bytes, kind: ArchiveKind, limits: ArchiveLimits = LIMITS) -> dict[str, bytes]:
    return {
        str(path): b"".join(chunks) for path, chunks in iter_members(io.BytesIO(data), kind, limits)
    }


def test_archive_kind_from_file_name() -> None:
    assert archive_kind("m.ZIP") is ArchiveKind.ZIP
    for name in ("m.tar", "m.tar.gz", "m.tgz", "m.tar.xz", "m.tar.bz2"):
        assert archive_kind(name) is ArchiveKind.TAR
    assert archive_kind("m.npz") is None


def test_zip_and_tar_members_come_out_with_their_bytes() -> None:
    files = {"config.json": b"{}", "weights/w.safetensors": b"x" * 5000}
    assert unpack(zip_bytes(files), ArchiveKind.ZIP) == files
    for compression in ("gz", "bz2", "xz", ""):
        assert unpack(tar_bytes(files, compression=compression), ArchiveKind.TAR) == files


def test_tar_dot_slash_prefix_is_accepted() -> None:
    assert unpack(tar_bytes({"./a.json": b"{}"}), ArchiveKind.TAR) == {"a.json": b"{}"}


@pytest.mark.parametrize("name", ["../evil.json", "/etc/passwd", "a/../../b", "a\\..\\b", ".."])
def test_traversal_member_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInputError):
        unpack(zip_bytes({name: b"{}"}), ArchiveKind.ZIP)
    with pytest.raises(InvalidInputError):
        unpack(tar_bytes({name: b"{}"}), ArchiveKind.TAR)


def test_links_and_devices_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="symbolic link"):
        unpack(zip_bytes({"a.json": b"{}"}, symlink="evil"), ArchiveKind.ZIP)
    with pytest.raises(InvalidInputError, match="link"):
        unpack(tar_bytes({}, symlink="evil"), ArchiveKind.TAR)
    with pytest.raises(InvalidInputError, match="link"):
        unpack(tar_bytes({}, hardlink="evil"), ArchiveKind.TAR)
    with pytest.raises(InvalidInputError, match="regular file"):
        unpack(tar_bytes({}, device="tty"), ArchiveKind.TAR)


def test_zip_bomb_stops_at_the_unpacked_cap() -> None:
    bomb = zip_bytes({"zeros.json": b"0" * (20 * 1024 * 1024)})
    assert len(bomb) < 100_000  # what the attacker sends
    with pytest.raises(InvalidInputError, match="unpacks to more than"):
        unpack(bomb, ArchiveKind.ZIP)


def test_tar_gz_bomb_stops_at_the_unpacked_cap() -> None:
    bomb = tar_bytes({"zeros.json": b"0" * (20 * 1024 * 1024)})
    with pytest.raises(InvalidInputError):
        unpack(bomb, ArchiveKind.TAR)


def test_zip_that_lies_about_sizes_is_still_capped() -> None:
    data = bytearray(zip_bytes({"a.json": b"0" * (3 * 1024 * 1024)}))
    # Patch every recorded uncompressed size to 10 bytes: the cap counts real bytes.
    at = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, at + 24, 10)
    with pytest.raises(InvalidInputError):
        unpack(bytes(data), ArchiveKind.ZIP)


def test_file_count_caps() -> None:
    many = {f"f{i}.json": b"{}" for i in range(11)}
    with pytest.raises(InvalidInputError, match="more than 10 files"):
        unpack(tar_bytes(many), ArchiveKind.TAR)
    with pytest.raises(InvalidInputError):
        unpack(zip_bytes(many), ArchiveKind.ZIP)
    huge_directory = zip_bytes({f"f{i}.json": b"" for i in range(25)})
    with pytest.raises(InvalidInputError, match="entries"):
        unpack(huge_directory, ArchiveKind.ZIP)


def test_duplicate_members_are_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.json", b"{}")
        with pytest.warns(UserWarning, match="Duplicate"):
            archive.writestr("a.json", b"[]")
    with pytest.raises(InvalidInputError, match="twice"):
        unpack(buffer.getvalue(), ArchiveKind.ZIP)


def test_oversized_pax_headers_are_refused_before_reading() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("a.json")
        info.pax_headers = {"comment": "x" * (256 * 1024)}
        archive.addfile(info, io.BytesIO(b""))
    with pytest.raises(InvalidInputError):
        unpack(buffer.getvalue(), ArchiveKind.TAR)


@pytest.mark.parametrize(
    "data", [b"", b"not an archive", b"\x1f\x8b\x08garbage", b"PK\x03\x04truncated" * 40]
)
def test_garbage_is_a_clear_refusal(data: bytes) -> None:
    with pytest.raises(InvalidInputError):
        unpack(data, ArchiveKind.ZIP)
    with pytest.raises(InvalidInputError):
        unpack(data + b"\x01" * 1024, ArchiveKind.TAR)


def test_empty_archives_hold_nothing() -> None:
    assert unpack(zip_bytes({}), ArchiveKind.ZIP) == {}
    assert unpack(tar_bytes({}), ArchiveKind.TAR) == {}
