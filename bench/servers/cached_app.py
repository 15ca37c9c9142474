"""The bench services with the prediction cache on (`bench/cache.py`): W1 and W2 as in
`modelserve_app.py`, plus `cache = cache_policy(...)`. Served by `modelserve serve
bench/servers/cached_app.py:CachedTinyService` (or `:CachedMiniLMService`)."""

from __future__ import annotations

from bench.servers.modelserve_app import MiniLMService, TinyService
from modelserve import cache_policy


class CachedTinyService(TinyService):
    """W1 with its answers cached for an hour."""

    name = "tiny"
    cache = cache_policy(ttl_s=3600)


class CachedMiniLMService(MiniLMService):
    """W2 with its answers cached for an hour."""

    name = "minilm"
    cache = cache_policy(ttl_s=3600)
