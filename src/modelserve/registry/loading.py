"""From a registry version to something the runtime can serve: import its Service class.

A version references its code (`pkg.module:Class` or `path/file.py:Class`) and carries its
files; the code is imported from this machine, the files come from the artifact store. The
class is served under the registry's model name and version, whatever its own `name` says.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from modelserve.errors import InvalidInputError, ModelserveError
from modelserve.registry.safety import is_file_ref
from modelserve.service.loader import load_target
from modelserve.service.spec import ServiceSpec


def load_service(ref: str) -> ServiceSpec:
    """The one Service class `ref` names; InvalidInputError (422) saying what is wrong."""
    try:
        specs = load_target(ref)
    except ModelserveError as exc:
        raise InvalidInputError(
            f"cannot use service {ref[:200]!r}: {exc.message}", details={"service": ref[:200]}
        ) from exc
    except Exception as exc:  # user code failing at import in a way the loader does not wrap
        raise InvalidInputError(
            f"cannot import service {ref[:200]!r}: {type(exc).__name__}",
            details={"service": ref[:200]},
        ) from exc
    if len(specs) != 1:
        names = ", ".join(s.cls.__name__ for s in specs)
        raise InvalidInputError(
            f"{ref[:200]!r} defines several services ({names}); name one as {ref}:Class",
            details={"service": ref[:200]},
        )
    return specs[0]


def canonical_ref(ref: str) -> str:
    """File references made absolute (they are imported later, from another working folder)."""
    if not is_file_ref(ref):
        return ref
    location, sep, attr = ref.rpartition(":") if ref.count(":") == 1 else (ref, "", "")
    return str(Path(location).resolve()) + sep + attr


def version_spec(ref: str, *, model: str, version: str, artifact_dir: Path | None) -> ServiceSpec:
    """The spec that serves one registry version: its class under the registry's name."""
    spec = load_service(ref)
    return dataclasses.replace(spec, name=model, version=version, artifact_dir=artifact_dir)
