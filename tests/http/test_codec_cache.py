"""CodecCache: one codec per loaded version, kept by the HTTP layer and gone with the version."""

from __future__ import annotations

import gc

from modelserve import ServiceSpec
from modelserve.http.codec import CodecCache
from modelserve.runtime.versions import DeployedService
from tests.http.services import Summer


def test_each_version_gets_its_codec_once() -> None:
    cache = CodecCache(max_batch_inputs=8)
    spec = ServiceSpec.from_class(Summer)
    first, second = DeployedService(spec), DeployedService(spec)
    codec = cache.get(first)
    assert cache.get(first) is codec
    assert cache.get(second) is not codec  # same spec, another loaded version: its own codec
    assert codec.max_inputs == 8
    assert len(cache) == 2


def test_a_freed_version_leaves_nothing_behind() -> None:
    cache = CodecCache(max_batch_inputs=8)
    spec = ServiceSpec.from_class(Summer)
    kept, retired = DeployedService(spec), DeployedService(spec)
    cache.get(kept)
    cache.get(retired)
    del retired
    gc.collect()
    assert len(cache) == 1
    # A version made later may reuse the freed one's memory (and id): it gets a fresh codec.
    again = DeployedService(spec)
    assert cache.get(again).max_inputs == 8
    assert len(cache) == 2
