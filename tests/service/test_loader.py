from __future__ import annotations

from pathlib import Path

import pytest

from modelserve import ServiceLoadError, load_target

SERVICES = """
from pydantic import BaseModel
from modelserve import Service

class In(BaseModel):
    x: float

class Out(BaseModel):
    y: float

class First(Service[In, Out]):
    name = "first"
    def predict(self, batch):
        return [Out(y=i.x) for i in batch]

class Second(First):
    name = "second"
"""


@pytest.fixture
def services_file(tmp_path: Path) -> Path:
    path = tmp_path / "svc.py"
    path.write_text(SERVICES)
    return path


def test_file_target_serves_every_named_service(services_file: Path) -> None:
    specs = load_target(str(services_file))
    assert sorted(s.name for s in specs) == ["first", "second"]
    assert all(s.source is not None and s.source.kind == "file" for s in specs)


def test_file_target_with_attribute(services_file: Path) -> None:
    (spec,) = load_target(f"{services_file}:Second")
    assert spec.name == "second"


def test_module_target() -> None:
    (spec,) = load_target("tests.service.svc_module:Echo")
    assert spec.name == "echo" and spec.source is not None and spec.source.kind == "module"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("does/not/exist.py", "no such file"),
        ("no_such_module_xyz", "cannot import"),
        ("tests.service.svc_module:Missing", "no attribute"),
        ("tests.service.svc_module:NotAService", "not a modelserve.Service"),
    ],
)
def test_bad_targets_explain_themselves(target: str, message: str) -> None:
    with pytest.raises(ServiceLoadError, match=message):
        load_target(target)


def test_file_that_raises_on_import(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('nope')\n")
    with pytest.raises(ServiceLoadError, match="error while importing"):
        load_target(str(path))


def test_file_without_services(tmp_path: Path) -> None:
    path = tmp_path / "empty.py"
    path.write_text("x = 1\n")
    with pytest.raises(ServiceLoadError, match="defines no Service"):
        load_target(str(path))
