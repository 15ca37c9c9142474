"""What an artifact file is, decided from its bytes without ever loading it (V13).

Each accepted extension has a content check: a file named `.safetensors` must parse as one, a
`.json` must be JSON, a `.npz` may hold no object arrays. Pickles (and joblib, legacy torch files
and anything whose content cannot be verified) *need trust*: loading them runs code, so only a
version an admin marks trusted may carry them. Torch checkpoints in the zip format are accepted
when a static scan of their pickle opcodes (`pickletools.genops`, which parses and never
executes) finds only the globals `torch.load(weights_only=True)` also allows.

`inspect_file` returns the verdict or raises InvalidInputError (422) when the content
contradicts the extension.
"""

from __future__ import annotations

import enum
import io
import json
import pickletools
import struct
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

import numpy as np

from modelserve.errors import InvalidInputError

MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_TEXT_BYTES = 64 * 1024 * 1024
MAX_PICKLE_SCAN_BYTES = 64 * 1024 * 1024
MAX_NPY_HEADER = 64 * 1024
MAX_NPZ_MEMBERS = 10_000

PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib", ".dill", ".cloudpickle"})
TORCH_SUFFIXES = frozenset({".pt", ".pth", ".bin", ".ckpt"})
TEXT_SUFFIXES = frozenset({".txt", ".md", ".csv", ".tsv", ".yaml", ".yml"})

# Exactly what a torch state_dict pickles (checked against torch 2.x output), and what
# torch's weights_only unpickler allows for those. Anything else is code we would run.
TORCH_SAFE_GLOBALS = frozenset(
    {
        ("collections", "OrderedDict"),
        ("torch._utils", "_rebuild_tensor"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_tensor_v3"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch._utils", "_rebuild_parameter_with_state"),
        ("torch", "device"),
        ("torch", "Size"),
        *(
            ("torch", f"{kind}Storage")
            for kind in (
                "Float",
                "Double",
                "Half",
                "BFloat16",
                "Long",
                "Int",
                "Short",
                "Char",
                "Byte",
                "Bool",
                "ComplexFloat",
                "ComplexDouble",
            )
        ),
    }
)
_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"})
# Opcodes that reach callables through something other than an inspectable GLOBAL.
_OPAQUE_OPS = frozenset({"EXT1", "EXT2", "EXT4", "INST", "OBJ"})
_MEMO_PUT_OPS = frozenset({"MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"})


class ArtifactFormat(enum.StrEnum):
    """The verified kind of an artifact file."""

    SAFETENSORS = "safetensors"
    ONNX = "onnx"
    JSON = "json"
    NUMPY = "numpy"
    TORCH = "torch"
    TEXT = "text"
    PICKLE = "pickle"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Inspection:
    """The verdict on one file: its format, and why it needs trust (None when it does not)."""

    format: ArtifactFormat
    needs_trust: str | None = None


def inspect_file(path: PurePosixPath, stream: BinaryIO, size: int) -> Inspection:
    """Classify the file at `path` (its name inside the version) from its content.

    `stream` is seekable and positioned anywhere; it is read, never executed or unpickled.
    """
    suffix = path.suffix.lower()
    stream.seek(0)
    if suffix == ".safetensors":
        _check_safetensors(path, stream, size)
        return Inspection(ArtifactFormat.SAFETENSORS)
    if suffix == ".onnx":
        _check_onnx(path, stream, size)
        return Inspection(ArtifactFormat.ONNX)
    if suffix == ".json":
        _check_json(path, stream, size)
        return Inspection(ArtifactFormat.JSON)
    if suffix == ".npy":
        _check_npy(path, stream)
        return Inspection(ArtifactFormat.NUMPY)
    if suffix == ".npz":
        _check_npz(path, stream)
        return Inspection(ArtifactFormat.NUMPY)
    if suffix in TEXT_SUFFIXES:
        _check_text(path, stream, size)
        return Inspection(ArtifactFormat.TEXT)
    if suffix in TORCH_SUFFIXES:
        return _inspect_torch(path, stream)
    if suffix in PICKLE_SUFFIXES:
        return Inspection(
            ArtifactFormat.PICKLE, "pickle/joblib files run code when loaded; use safetensors"
        )
    return Inspection(
        ArtifactFormat.UNKNOWN,
        f"{suffix or 'files without an extension'} cannot be checked for safety",
    )


def _bad(path: PurePosixPath, why: str) -> InvalidInputError:
    return InvalidInputError(
        f"artifact {str(path)[:200]!r} is not a valid {path.suffix or 'file'}: {why}",
        details={"path": str(path)[:200], "reason": why},
    )


def _check_safetensors(path: PurePosixPath, stream: BinaryIO, size: int) -> None:
    head = stream.read(8)
    if len(head) != 8:
        raise _bad(path, "too short for a safetensors header")
    (length,) = struct.unpack("<Q", head)
    if length > MAX_SAFETENSORS_HEADER or length > size - 8:
        raise _bad(path, "header length is out of range")
    try:
        header = json.loads(stream.read(length))
    except (ValueError, UnicodeDecodeError):
        raise _bad(path, "header is not JSON") from None
    if not isinstance(header, dict):
        raise _bad(path, "header is not a JSON object")
    data_bytes = size - 8 - length
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("dtype"), str)
            and isinstance(entry.get("shape"), list)
            and all(isinstance(d, int) and d >= 0 for d in entry["shape"])
            and isinstance(entry.get("data_offsets"), list)
            and len(entry["data_offsets"]) == 2
            and all(isinstance(o, int) for o in entry["data_offsets"])
        ):
            raise _bad(path, f"tensor {str(name)[:80]!r} is malformed")
        begin, end = entry["data_offsets"]
        if not 0 <= begin <= end <= data_bytes:
            raise _bad(path, f"tensor {str(name)[:80]!r} points outside the file")


def _check_onnx(path: PurePosixPath, stream: BinaryIO, size: int) -> None:
    # An ONNX ModelProto is protobuf and starts with field 1 (ir_version, varint): tag 0x08.
    head = stream.read(4)
    if size < 2 or head[:1] != b"\x08":
        raise _bad(path, "does not start like an ONNX model (ir_version field)")
    if head.startswith(b"PK") or head[:1] == b"\x80":
        raise _bad(path, "is an archive or a pickle")


def _check_json(path: PurePosixPath, stream: BinaryIO, size: int) -> None:
    if size > MAX_JSON_BYTES:
        raise _bad(path, f"JSON artifacts are limited to {MAX_JSON_BYTES} bytes; use safetensors")
    try:
        json.loads(stream.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _bad(path, "is not JSON") from None


def _check_text(path: PurePosixPath, stream: BinaryIO, size: int) -> None:
    if size > MAX_TEXT_BYTES:
        raise _bad(path, f"text artifacts are limited to {MAX_TEXT_BYTES} bytes")
    data = stream.read()
    if b"\x00" in data:
        raise _bad(path, "holds NUL bytes: not text")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(path, "is not UTF-8 text") from None


def _check_npy(path: PurePosixPath, stream: BinaryIO) -> None:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        # The header is a Python literal parsed with ast.literal_eval: no code runs.
        if version == (1, 0):
            _, _, dtype = fmt.read_array_header_1_0(stream, max_header_size=MAX_NPY_HEADER)
        else:
            _, _, dtype = fmt.read_array_header_2_0(stream, max_header_size=MAX_NPY_HEADER)
    except (ValueError, SyntaxError, TypeError, struct.error, OSError):
        raise _bad(path, "is not a NumPy .npy array") from None
    if dtype.hasobject:
        raise _bad(path, "holds Python objects (pickled); save plain numeric arrays")


def _check_npz(path: PurePosixPath, stream: BinaryIO) -> None:
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise _bad(path, "is not a NumPy .npz archive") from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_NPZ_MEMBERS:
            raise _bad(path, f"holds more than {MAX_NPZ_MEMBERS} arrays")
        for member in members:
            if not member.filename.endswith(".npy"):
                raise _bad(path, f"member {member.filename[:80]!r} is not a .npy array")
            try:
                with archive.open(member) as inner:
                    # Only the header is decompressed; the array data is never read here.
                    header = inner.read(MAX_NPY_HEADER + 16)
            except (zipfile.BadZipFile, RuntimeError, OSError, ValueError, EOFError):
                raise _bad(path, f"member {member.filename[:80]!r} cannot be read") from None
            _check_npy(path, io.BytesIO(header))


def _inspect_torch(path: PurePosixPath, stream: BinaryIO) -> Inspection:
    head = stream.read(4)
    stream.seek(0)
    if not head.startswith(b"PK"):
        # The legacy (pre-1.6) torch format is a bare pickle stream: nothing to scan safely.
        return Inspection(ArtifactFormat.PICKLE, "legacy torch checkpoints are plain pickles")
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise _bad(path, "is not a torch checkpoint (bad zip)") from None
    with archive:
        pickles = [m for m in archive.infolist() if m.filename.endswith(".pkl")]
        if not pickles:
            raise _bad(path, "is a zip without a torch data.pkl")
        for member in pickles:
            if member.file_size > MAX_PICKLE_SCAN_BYTES:
                return Inspection(ArtifactFormat.PICKLE, "its pickle is too large to scan")
            try:
                with archive.open(member) as inner:
                    data = inner.read(MAX_PICKLE_SCAN_BYTES + 1)
            except (zipfile.BadZipFile, RuntimeError, OSError, ValueError, EOFError):
                raise _bad(path, "its pickle cannot be read") from None
            unsafe = unsafe_globals(data)
            if unsafe:
                return Inspection(
                    ArtifactFormat.PICKLE,
                    f"its pickle references {', '.join(sorted(unsafe)[:5])}",
                )
    return Inspection(ArtifactFormat.TORCH)


def unsafe_globals(data: bytes) -> set[str]:
    """Callables a pickle would import, other than the torch-state_dict allowlist.

    Parses opcodes only. Anything that cannot be resolved statically (a STACK_GLOBAL whose
    names come from the memo, INST/OBJ, extension codes, a malformed stream) counts as unsafe.
    """
    found: set[str] = set()
    strings: list[str] = []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            name = opcode.name
            if name in _STRING_OPS:
                strings.append(str(arg))
                continue
            if name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
                if (module, attr) not in TORCH_SAFE_GLOBALS:
                    found.add(f"{module}.{attr}")
            elif name == "STACK_GLOBAL":
                if len(strings) < 2:
                    found.add("a dynamically named global")
                elif (strings[-2], strings[-1]) not in TORCH_SAFE_GLOBALS:
                    found.add(f"{strings[-2]}.{strings[-1]}")
            elif name in _OPAQUE_OPS:
                found.add(f"opcode {name}")
            # Only strings pushed right before STACK_GLOBAL name its global (memo puts between
            # them do not change the stack).
            if name not in _MEMO_PUT_OPS:
                strings = []
    except (ValueError, EOFError, struct.error, UnicodeDecodeError):
        found.add("a malformed pickle stream")
    return found
