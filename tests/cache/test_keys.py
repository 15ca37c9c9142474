"""Keys: one spelling per input, and another key for anything that may answer differently."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pydantic import BaseModel

from modelserve import ServiceDefinitionError, ServiceSpec, cache_policy
from modelserve.cache.keys import canonical_input, entry_key, raw_input, served_version_id
from tests.cache.services import Doubler, PerTenant, X


def test_field_order_and_number_spelling_do_not_change_the_key() -> None:
    parse = ServiceSpec.from_class(Doubler).wire_input_type.model_validate_json
    spellings = [
        b'{"x": 1, "tags": {"b": 1, "a": 2}}',
        b'{"tags": {"a": 2, "b": 1}, "x": 1.0}',
        b'{"x": 1.00, "tags": {"a": 2, "b": 1}}',
        b'{"x": 10e-1, "tags": {"b": 1, "a": 2}}',
    ]
    assert len({canonical_input(parse(body)) for body in spellings}) == 1
    assert canonical_input(parse(b'{"x": 1.5}')) != canonical_input(parse(b'{"x": 1}'))


def test_bytes_fields_and_raw_bodies_are_digests() -> None:
    class Blob(BaseModel):
        data: bytes

    assert canonical_input(Blob(data=b"a")) != canonical_input(Blob(data=b"b"))
    assert raw_input(b"a" * 10_000) != raw_input(b"a" * 10_001)
    assert len(raw_input(b"a" * 10_000)) < 64  # a digest, not the body


def test_tenants_never_share_a_key_and_no_tenant_is_not_a_tenant() -> None:
    canonical = canonical_input(X(x=1))
    assert canonical is not None
    keys = {entry_key("m", "v", tenant, canonical) for tenant in (None, "a", "b", "-", "t:a", "")}
    assert len(keys) == 6


def test_the_version_id_changes_with_what_answers() -> None:
    spec = ServiceSpec.from_class(Doubler)
    base = served_version_id(spec)
    assert served_version_id(ServiceSpec.from_class(Doubler)) == base  # stable
    other_version = dataclasses.replace(spec, version="2")
    other_files = dataclasses.replace(spec, artifact_dir=Path("/store/versions/doubler/1/abcdef"))
    more_files = dataclasses.replace(spec, artifact_dir=Path("/store/doubler/1/012345"))
    other_class = ServiceSpec.from_class(PerTenant)
    ids = {served_version_id(s) for s in (other_version, other_files, more_files, other_class)}
    assert base not in ids and len(ids) == 4
    # Another replica keeps its artifact store elsewhere: the same files, the same id.
    elsewhere = dataclasses.replace(spec, artifact_dir=Path("/data/store/doubler/1/abcdef"))
    assert served_version_id(elsewhere) == served_version_id(other_files)


def test_policies_are_checked() -> None:
    for bad in ({"ttl_s": 0}, {"max_items": 0}, {"max_bytes": 0}, {"ttl_s": 1e12}):
        with pytest.raises(ServiceDefinitionError):
            cache_policy(**bad)  # type: ignore[arg-type]

    class Wrong(Doubler):
        name = "wrong"
        cache = {"ttl_s": 5}  # type: ignore[assignment]

    with pytest.raises(ServiceDefinitionError, match="cache_policy"):
        ServiceSpec.from_class(Wrong)
