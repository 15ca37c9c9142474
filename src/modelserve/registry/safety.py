"""Names and paths that may reach the file system: checked before any file is opened (V12).

Model names, versions and aliases become URL segments, directory names and metric labels;
artifact paths become files under a version's directory. Every one of them is checked here
against an allowlist, so `../etc`, `/etc/passwd`, `model/..`, `" .."`, empty or whitespace-only
values are refused with a 422 before anything touches the disk. `resolve_inside` then checks the
joined path once more, after resolving symlinks, as a second line of defence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from modelserve.errors import InvalidInputError
from modelserve.service.spec import NAME_PATTERN, VERSION_PATTERN

# One segment of an artifact path: letters, digits, '.', '_', '+', '-'; no spaces, slashes,
# backslashes, colons or control characters. "." and ".." (and any all-dots name) are refused
# separately, as is a leading '-' (it reads as an option to shell tools).
_SEGMENT = re.compile(r"^[A-Za-z0-9._+-]{1,255}$")
MAX_PATH_CHARS = 1024
MAX_PATH_DEPTH = 32
MAX_MANIFEST_FILES = 10_000
# What a service class reference may look like: `pkg.module:Class` or `path/to/file.py:Class`.
_MODULE_REF = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(:[A-Za-z_]\w*)?$")
_FILE_REF = re.compile(r"^[^\x00-\x1f:]{1,1024}\.py(:[A-Za-z_]\w*)?$")


def _refuse(what: str, value: object, why: str) -> InvalidInputError:
    shown = value[:80] if isinstance(value, str) else value
    return InvalidInputError(f"invalid {what}: {why}", details={"field": what, "value": shown})


def check_name(value: str, what: str = "model name") -> str:
    """A model or alias name: `NAME_PATTERN` (lowercase, digits, '.', '_', '-'), no '..'."""
    if not isinstance(value, str) or not NAME_PATTERN.match(value) or ".." in value:
        raise _refuse(what, value, f"use 1-63 characters matching {NAME_PATTERN.pattern}")
    return value


def check_version(value: str) -> str:
    """A version label: `VERSION_PATTERN`, no '..'."""
    if not isinstance(value, str) or not VERSION_PATTERN.match(value) or ".." in value:
        raise _refuse("version", value, f"use 1-64 characters matching {VERSION_PATTERN.pattern}")
    return value


def check_relative_path(value: str) -> PurePosixPath:
    """An artifact path inside a version: relative, '/'-separated, every segment allowlisted."""
    if not isinstance(value, str) or not value or not value.strip():
        raise _refuse("path", value, "must not be empty")
    if len(value) > MAX_PATH_CHARS:
        raise _refuse("path", value, f"longer than {MAX_PATH_CHARS} characters")
    if value.startswith("/") or "\\" in value or ":" in value:
        raise _refuse("path", value, "must be relative, with '/' between folders")
    parts = value.split("/")
    if len(parts) > MAX_PATH_DEPTH:
        raise _refuse("path", value, f"more than {MAX_PATH_DEPTH} folders deep")
    for part in parts:
        if not _SEGMENT.match(part):
            raise _refuse(
                "path", value, "each part uses letters, digits, '.', '_', '+' or '-' only"
            )
        if set(part) == {"."}:
            raise _refuse("path", value, "'.' and '..' are not allowed")
        if part.startswith("-"):
            raise _refuse("path", value, "a part must not start with '-'")
    return PurePosixPath(*parts)


def check_manifest_paths(paths: Iterable[str]) -> list[PurePosixPath]:
    """Every path checked; no duplicates (even by case), no path both a file and a folder."""
    checked: list[PurePosixPath] = []
    seen: dict[str, str] = {}
    for raw in paths:
        path = check_relative_path(raw)
        key = str(path).lower()
        if key in seen:
            raise _refuse("path", raw, f"listed twice (also as {seen[key]!r})")
        seen[key] = str(path)
        checked.append(path)
        if len(checked) > MAX_MANIFEST_FILES:
            raise _refuse("files", len(checked), f"more than {MAX_MANIFEST_FILES} files")
    folders = {str(parent).lower() for p in checked for parent in p.parents}
    for path in checked:
        if str(path).lower() in folders:
            raise _refuse("path", str(path), "is both a file and a folder")
    return checked


def resolve_inside(root: Path, relative: PurePosixPath) -> Path:
    """`root / relative`, refusing anything that resolves outside `root` (symlinks included)."""
    base = root.resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base) or target == base:
        raise _refuse("path", str(relative), "points outside the artifact folder")
    return target


def check_service_ref(value: str) -> str:
    """`pkg.module:Class` or `path/to/file.py:Class`; the class is imported later, not here."""
    if not isinstance(value, str) or not value.strip():
        raise _refuse("service", value, "must not be empty")
    if _MODULE_REF.match(value) or _FILE_REF.match(value):
        return value
    raise _refuse("service", value, "use pkg.module:Class or path/to/file.py:Class")


def is_file_ref(value: str) -> bool:
    """True for `path/file.py[:Class]` references (they import code from the file system)."""
    location = value.rpartition(":")[0] if value.count(":") == 1 else value
    return location.endswith(".py") or "/" in location
