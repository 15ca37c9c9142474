"""Cache keys: which version answered, which input, and for whom.

A key is the SHA-256 of

    model name | served version id | tenant (per-tenant policies only) | canonical input

The served version id (`served_version_id`) names the code and files that answer, not the
alias or the traffic split that chose them: the pipeline builds keys only after its `admit`
step picked the version for this very request, so a promotion, a rollback or a canary share
change can only ever look up keys of the version that now answers. A version string reused for
other code or other registry files still gets another id (the defining file's digest and the
artifact folder's manifest digest are part of it).

The canonical input is the validated input with its field order fixed and its numbers in one
spelling (`{"b": 1.0, "a": 2}` and `{"a": 2, "b": 1}` are one input when both are floats), so
that clients who write the same input differently share answers; a raw body is its SHA-256.
"""

from __future__ import annotations

import hashlib
import inspect
from typing import Any

import orjson
from pydantic import BaseModel

from modelserve.service.spec import ServiceSpec

# Bump when the key layout or the stored value's format changes: old entries then never match.
KEY_FORMAT = b"modelserve-cache-1"
_SEP = b"\x00"


def served_version_id(spec: ServiceSpec) -> str:
    """A short id that changes whenever the code or the files answering for `spec` change.

    Built from the model name and version, the class's module and qualified name, the SHA-256
    of the file that defines it (when it has one) and the artifact folder, whose name is the
    registry's manifest digest of the version's files (`registry/artifacts.py`). Nothing in it
    depends on the machine, so replicas sharing a Redis share answers.
    """
    cls = spec.cls
    digest = hashlib.sha256(KEY_FORMAT)
    for part in (spec.name, spec.version, cls.__module__, cls.__qualname__):
        digest.update(_SEP + part.encode())
    digest.update(_SEP + _source_digest(cls))
    if spec.artifact_dir is not None:
        # `<model>/<version>/<manifest digest>` (registry/artifacts.py), without the store's
        # root: replicas that keep their artifact store elsewhere still share one id.
        digest.update(_SEP + "/".join(spec.artifact_dir.parts[-3:]).encode())
    return digest.hexdigest()[:32]


def _source_digest(cls: type) -> bytes:
    try:
        path = inspect.getsourcefile(cls)
        if path is None:
            return b"-"
        with open(path, "rb") as source:
            return hashlib.sha256(source.read()).digest()
    except (OSError, TypeError):
        # Built-in or generated classes: the version string is then all there is.
        return b"-"


def canonical_input(item: Any) -> bytes | None:
    """One validated input in one spelling: keys sorted, numbers as the parsed values print.

    None when the input cannot be written canonically (a value JSON has no spelling for):
    such a request is then answered without the cache.
    """
    try:
        value = item.model_dump(mode="python") if isinstance(item, BaseModel) else item
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=_bytes)
    except (TypeError, ValueError):
        return None


def _bytes(value: Any) -> Any:
    # orjson does not write bytes: a bytes field is its digest, tagged so no string matches it.
    if isinstance(value, bytes | bytearray | memoryview):
        return {"\x00sha256": hashlib.sha256(value).hexdigest()}
    raise TypeError(type(value).__name__)


def raw_input(body: bytes) -> bytes:
    """A raw `application/octet-stream` body's canonical form: its SHA-256, tagged."""
    return b"raw:" + hashlib.sha256(body).digest()


def entry_key(name: str, version_id: str, tenant: str | None, canonical: bytes) -> bytes:
    """The 32-byte key of one answer."""
    digest = hashlib.sha256(name.encode())
    digest.update(_SEP + version_id.encode())
    # "-" cannot be confused with a tenant: those are prefixed.
    digest.update(_SEP + (b"-" if tenant is None else b"t:" + tenant.encode()))
    digest.update(_SEP + canonical)
    return digest.digest()
