"""Find Service classes in a serve target: `path/to/file.py`, `package.module` or `module:attr`."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from modelserve.errors import ServiceLoadError
from modelserve.service.base import Service
from modelserve.service.spec import ServiceSource, ServiceSpec


def load_target(target: str) -> list[ServiceSpec]:
    """Import a target and describe every Service it names.

    `file.py` or `module` serves every Service subclass defined in that module;
    `file.py:Attr` or `module:Attr` serves just that class.
    """
    location, _, attr = target.partition(":")
    is_file = location.endswith(".py") or "/" in location
    module = _import_file(location) if is_file else _import_module(location)
    kind: Any = "file" if is_file else "module"
    where = str(Path(location).resolve()) if is_file else location
    if attr:
        obj = getattr(module, attr, None)
        if obj is None:
            raise ServiceLoadError(f"{location!r} has no attribute {attr!r}")
        if not (isinstance(obj, type) and issubclass(obj, Service)):
            raise ServiceLoadError(f"{target!r} is not a modelserve.Service subclass")
        return [ServiceSpec.from_class(obj, source=ServiceSource(kind, where, attr))]
    specs = [
        ServiceSpec.from_class(obj, source=ServiceSource(kind, where, name))
        for name, obj in vars(module).items()
        if isinstance(obj, type)
        and issubclass(obj, Service)
        and obj is not Service
        and obj.__module__ == module.__name__
        and "name" in _class_attrs(obj)
    ]
    if not specs:
        raise ServiceLoadError(f"{target!r} defines no Service subclass with a name")
    return specs


def load_class(source: ServiceSource) -> type[Service[Any, Any]]:
    """Import the class a ServiceSource names (used by worker processes)."""
    module = (
        _import_file(source.location) if source.kind == "file" else _import_module(source.location)
    )
    obj = getattr(module, source.attr, None)
    if not (isinstance(obj, type) and issubclass(obj, Service)):
        raise ServiceLoadError(f"{source.location}:{source.attr} is not a Service subclass")
    return obj


def _class_attrs(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is Service:
            break
        names.update(vars(klass))
    return names


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ServiceLoadError(f"cannot import module {name!r}: {exc}") from exc


def _import_file(location: str) -> ModuleType:
    path = Path(location).resolve()
    if not path.is_file():
        raise ServiceLoadError(f"no such file: {location}")
    module_name = "modelserve_user_" + "_".join(path.with_suffix("").parts[-2:]).replace(".", "_")
    existing = sys.modules.get(module_name)
    if existing is not None and getattr(existing, "__file__", None) == str(path):
        return existing
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ServiceLoadError(f"cannot load {location}")
    module = importlib.util.module_from_spec(spec)
    # Registered before exec so dataclasses/pydantic can resolve the module by name.
    sys.modules[module_name] = module
    # The file's folder goes on sys.path so it can import its sibling modules.
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise ServiceLoadError(f"error while importing {location}: {exc!r}") from exc
    return module
