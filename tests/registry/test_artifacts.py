"""ArtifactStore: content-addressed, atomic writes, read-only materialized versions."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from modelserve.errors import PayloadTooLargeError, ResourceNotFoundError
from modelserve.registry.artifacts import (
    ArtifactStore,
    LocalArtifactStore,
    MemoryArtifactStore,
    manifest_digest,
)


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "local":
        yield LocalArtifactStore(tmp_path / "artifacts")
    else:
        memory = MemoryArtifactStore()
        yield memory
        memory.close()


def put(store: ArtifactStore, data: bytes) -> str:
    writer = store.writer(max_bytes=1 << 20)
    for start in range(0, len(data), 7):
        writer.write(data[start : start + 7])
    return writer.commit().sha256


def test_blobs_are_addressed_by_sha256_and_stored_once(store: ArtifactStore) -> None:
    data = b"weights" * 100
    first, second = put(store, data), put(store, data)
    assert first == second == hashlib.sha256(data).hexdigest()
    assert store.size(first) == len(data)
    with store.open(first) as handle:
        assert handle.read() == data


def test_staged_bytes_are_readable_before_commit_and_gone_after_abort(
    store: ArtifactStore,
) -> None:
    writer = store.writer(max_bytes=100)
    writer.write(b"abc")
    assert writer.staged().read() == b"abc"
    writer.abort()
    assert store.size(hashlib.sha256(b"abc").hexdigest()) is None


def test_size_cap_is_enforced_while_writing(store: ArtifactStore) -> None:
    writer = store.writer(max_bytes=10)
    writer.write(b"0123456789")
    with pytest.raises(PayloadTooLargeError):
        writer.write(b"!")
    writer.abort()


def test_unknown_or_malformed_digests_are_not_found(store: ArtifactStore) -> None:
    for digest in ("0" * 64, "../../etc/passwd", "ABC"):
        with pytest.raises(ResourceNotFoundError):
            store.open(digest)


def test_materialized_versions_hold_the_files(store: ArtifactStore) -> None:
    config, weights = put(store, b'{"scale": 2}'), put(store, b"\x00" * 64)
    files = {PurePosixPath("config.json"): config, PurePosixPath("w/weights.bin"): weights}
    folder = store.materialize("m", "1", files)
    assert (folder / "config.json").read_bytes() == b'{"scale": 2}'
    assert (folder / "w" / "weights.bin").read_bytes() == b"\x00" * 64
    # Same files, same folder: materializing is idempotent.
    assert store.materialize("m", "1", files) == folder
    assert folder.name == manifest_digest(files)


def test_local_store_leaves_no_temporary_files_and_blobs_are_read_only(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    digest = put(store, b"data")
    writer = store.writer(max_bytes=10)
    writer.write(b"partial")
    writer.abort()
    assert list((tmp_path / "artifacts" / "tmp").iterdir()) == []
    blob = store.blob_path(digest)
    assert not os.access(blob, os.W_OK) or os.geteuid() == 0
    assert oct(blob.stat().st_mode & 0o777) == oct(0o444)
    folder = store.materialize("m", "1", {PurePosixPath("d.bin"): digest})
    assert (folder / "d.bin").stat().st_ino == blob.stat().st_ino  # a hard link, no copy


def test_materializing_a_missing_blob_fails_cleanly(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    with pytest.raises(ResourceNotFoundError, match="missing"):
        store.materialize("m", "1", {PurePosixPath("a.json"): "f" * 64})
    assert list((tmp_path / "artifacts" / "tmp").iterdir()) == []
    assert list((tmp_path / "artifacts" / "versions").iterdir()) == []
