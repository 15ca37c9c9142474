"""V13: artifact content is classified from bytes; pickles need trust; lies about type are 422."""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from pathlib import Path, PurePosixPath

import numpy as np
import pytest

from modelserve.errors import InvalidInputError
from modelserve.registry.formats import ArtifactFormat, Inspection, inspect_file, unsafe_globals
from tests.registry.files import (
    evil_pickle,
    npy_bytes,
    npz_bytes,
    safetensors_bytes,
    torch_like_zip,
)


def inspect(name: str, data: bytes) -> Inspection:
    return inspect_file(PurePosixPath(name), io.BytesIO(data), len(data))


def test_safe_formats_are_accepted_without_trust() -> None:
    weights = safetensors_bytes({"w": np.arange(6, dtype="<f4").reshape(2, 3)})
    cases = {
        "w.safetensors": (weights, ArtifactFormat.SAFETENSORS),
        "m.onnx": (b"\x08\x07\x12\x04test", ArtifactFormat.ONNX),
        "c.json": (b'{"scale": 2}', ArtifactFormat.JSON),
        "a.npz": (npz_bytes(a=np.ones(3)), ArtifactFormat.NUMPY),
        "a.npy": (npy_bytes(np.zeros((2, 2))), ArtifactFormat.NUMPY),
        "vocab.txt": ("héllo\nworld\n".encode(), ArtifactFormat.TEXT),
    }
    for name, (data, expected) in cases.items():
        assert inspect(name, data) == Inspection(expected), name


def test_safetensors_from_the_library_pass() -> None:
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    data = safetensors_numpy.save({"w": np.ones((3, 2), dtype=np.float32)})
    assert inspect("model.safetensors", data).format is ArtifactFormat.SAFETENSORS


def test_real_torch_state_dicts_pass_the_opcode_scan() -> None:
    torch = pytest.importorskip("torch")
    buffer = io.BytesIO()
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    state = module.state_dict()
    state["half"] = torch.zeros(2, dtype=torch.float16)
    torch.save(state, buffer)
    assert inspect("model.pt", buffer.getvalue()) == Inspection(ArtifactFormat.TORCH)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_reduce_payloads_need_trust_and_never_run(tmp_path: Path, protocol: int) -> None:
    sentinel = tmp_path / "pwned"
    payload = evil_pickle(sentinel, protocol)
    for name in ("model.pkl", "model.joblib", "model.pickle"):
        verdict = inspect(name, payload)
        assert verdict.format is ArtifactFormat.PICKLE and verdict.needs_trust
    verdict = inspect("model.pt", torch_like_zip(payload))
    assert verdict.format is ArtifactFormat.PICKLE
    assert "system" in (verdict.needs_trust or "") or "opcode" in (verdict.needs_trust or "")
    assert not sentinel.exists()


def test_opcode_scan_names_what_a_pickle_would_import(tmp_path: Path) -> None:
    assert unsafe_globals(pickle.dumps(OrderedDict(a=1), protocol=2)) == set()
    found = unsafe_globals(evil_pickle(tmp_path / "x", protocol=4))
    assert found and all("system" in f for f in found)
    assert unsafe_globals(b"\x80\x04garbage") == {"a malformed pickle stream"}


def test_legacy_torch_and_unknown_files_need_trust(tmp_path: Path) -> None:
    assert inspect("old.pt", evil_pickle(tmp_path / "x")).needs_trust
    assert inspect("weights.bin", b"\x00" * 64).needs_trust
    assert inspect("model.xgb", b"anything").format is ArtifactFormat.UNKNOWN
    assert inspect("README", b"text").needs_trust


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("model.safetensors", b"\x80\x04\x95pickle pretending"),
        ("model.safetensors", b"\xff" * 8 + b"{}"),
        ("model.safetensors", b"\x02\x00\x00\x00\x00\x00\x00\x00[]"),
        ("model.json", b"\x80\x04\x95\x00cos\nsystem"),
        ("model.json", b'{"a": '),
        ("model.onnx", b"\x80\x04\x95pickled"),
        ("model.onnx", b"PK\x03\x04zip"),
        ("model.npy", b"\x80\x04pickled"),
        ("model.npz", b"not a zip"),
        ("notes.txt", b"nul\x00inside"),
        ("notes.txt", b"\xff\xfe bad utf-8"),
        ("model.pt", b"PK\x03\x04 truncated zip"),
    ],
)
def test_content_that_contradicts_its_extension_is_422(name: str, data: bytes) -> None:
    with pytest.raises(InvalidInputError):
        inspect(name, data)


def test_object_arrays_are_refused_in_npy_and_npz() -> None:
    objects = np.array([{"a": 1}], dtype=object)
    with pytest.raises(InvalidInputError, match="Python objects"):
        inspect("a.npy", npy_bytes(objects))
    with pytest.raises(InvalidInputError, match="Python objects"):
        inspect("a.npz", npz_bytes(ok=np.ones(2), bad=objects))


def test_safetensors_offsets_outside_the_file_are_refused() -> None:
    data = safetensors_bytes({"w": np.ones(4, dtype="<f4")})
    with pytest.raises(InvalidInputError, match="outside"):
        inspect("w.safetensors", data[:-4])
