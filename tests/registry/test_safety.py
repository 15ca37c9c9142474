"""V12: names and artifact paths that try to leave their folder are refused before any open."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from modelserve.errors import InvalidInputError, ResourceNotFoundError
from modelserve.registry.artifacts import LocalArtifactStore
from modelserve.registry.safety import (
    check_manifest_paths,
    check_name,
    check_relative_path,
    check_service_ref,
    check_version,
    is_file_ref,
    resolve_inside,
)

# Triton's traversal list, plus the whitespace and encoding variants it names.
TRAVERSAL = [
    "../etc",
    "a/../b",
    "../../etc/passwd",
    "/etc/passwd",
    "model/..",
    "..",
    " ..",
    ".. ",
    "",
    " ",
    "\t",
    ".",
    "./x",
    "a//b",
    "a\\..\\b",
    "..\\windows",
    "C:\\windows",
    "c:x",
    "a/\x00b",
    "a\nb",
    "-rf",
    "...",
    "a/./b",
    "x/" * 40 + "y",
]


@pytest.mark.parametrize("value", TRAVERSAL)
def test_traversal_paths_are_refused(value: str) -> None:
    with pytest.raises(InvalidInputError):
        check_relative_path(value)


@pytest.mark.parametrize("value", [*TRAVERSAL, "UPPER", "a" * 64, "é", "a b", "a/b"])
def test_bad_model_and_alias_names_are_refused(value: str) -> None:
    with pytest.raises(InvalidInputError):
        check_name(value)


@pytest.mark.parametrize("value", [*TRAVERSAL, "1..2", "v" * 65, "1 0"])
def test_bad_versions_are_refused(value: str) -> None:
    with pytest.raises(InvalidInputError):
        check_version(value)


@pytest.mark.parametrize(
    "value", ["weights.safetensors", "tokenizer/vocab.txt", "a/b/c-1_2+3.json", ".gitattributes"]
)
def test_ordinary_paths_pass(value: str) -> None:
    assert str(check_relative_path(value)) == value


def test_names_and_versions_that_pass() -> None:
    assert check_name("iris-v2.large_1") == "iris-v2.large_1"
    assert check_version("2.0.1+cpu") == "2.0.1+cpu"


def test_manifest_refuses_duplicates_by_case_and_file_folder_clashes() -> None:
    with pytest.raises(InvalidInputError, match="twice"):
        check_manifest_paths(["Model.json", "model.json"])
    with pytest.raises(InvalidInputError, match="file and a folder"):
        check_manifest_paths(["a", "a/b.json"])
    assert check_manifest_paths(["a/b.json", "a/c.json"]) == [
        PurePosixPath("a/b.json"),
        PurePosixPath("a/c.json"),
    ]


def test_resolve_inside_refuses_symlinks_that_leave_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(InvalidInputError):
        resolve_inside(root, PurePosixPath("link/outside.txt"))
    assert resolve_inside(root, PurePosixPath("a/b")) == root.resolve() / "a" / "b"


@pytest.mark.parametrize(
    ("value", "is_file"),
    [("pkg.mod:Cls", False), ("pkg.mod", False), ("a/b.py:Cls", True), ("b.py", True)],
)
def test_service_references(value: str, is_file: bool) -> None:
    assert check_service_ref(value) == value
    assert is_file_ref(value) is is_file


@pytest.mark.parametrize("value", ["", " ", "os.system; rm", "a:b:c", "mod:1bad", "x\x00.py"])
def test_bad_service_references(value: str) -> None:
    with pytest.raises(InvalidInputError):
        check_service_ref(value)


# -- no file outside the root is opened ----------------------------------------------------

_OPENED: list[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _OPENED is not None and event == "open" and args and isinstance(args[0], str | bytes):
        _OPENED.append(str(args[0]))


sys.addaudithook(_audit)  # cannot be removed; records only inside `opened_files`


@contextmanager
def opened_files() -> Iterator[list[str]]:
    """Every path opened (by any code in this process) while the block runs."""
    global _OPENED
    _OPENED = []
    try:
        yield _OPENED
    finally:
        _OPENED = None


def test_store_opens_nothing_outside_its_root_for_traversal_input(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    store = LocalArtifactStore(root)
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("untouched")
    writer = store.writer(max_bytes=100)
    writer.write(b'{"a": 1}')
    blob = writer.commit()
    with opened_files() as opened:
        for bad in TRAVERSAL:
            # A PurePosixPath normalizes some of these ("a//b" is "a/b"): those may pass, and
            # must then land inside the root like any other file.
            with contextlib.suppress(InvalidInputError):
                store.materialize("m", "1", {PurePosixPath(bad): blob.sha256})
            with pytest.raises(InvalidInputError):
                store.materialize(bad, "1", {PurePosixPath("ok.json"): blob.sha256})
        for digest in ["../sentinel.txt", "/etc/passwd", "0" * 63 + "/"]:
            with pytest.raises(ResourceNotFoundError):
                store.open(digest)
    outside = [p for p in opened if not Path(p).resolve().is_relative_to(root.resolve())]
    assert outside == []
    assert sentinel.read_text() == "untouched"
    assert {p.name for p in tmp_path.iterdir()} == {"artifacts", "sentinel.txt"}


def test_wire_schemas_use_the_same_name_rules_as_services() -> None:
    from modelserve.schemas import registry as schemas
    from modelserve.service.spec import NAME_PATTERN, VERSION_PATTERN

    assert NAME_PATTERN.pattern == schemas.NAME_PATTERN
    assert VERSION_PATTERN.pattern == schemas.VERSION_PATTERN
