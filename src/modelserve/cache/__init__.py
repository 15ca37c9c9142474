"""The prediction cache: answers of repeated inputs reused, never another version's.

`PredictionCache` (one per predict pipeline) hands each loaded version that declares a
`cache_policy` a `VersionCache`; the pipeline's `lookup` step (between validate and submit)
asks it for an answer. Keys are built in `keys.py` from the exact version that the traffic
policy picked for the request, answers are stored as encoded bytes in the in-process
`MemoryStore` or in a shared `RedisStore` (with a timeout and a circuit breaker), and
identical concurrent misses share one model call (`SingleFlight`). See docs/cache.md.

This package knows nothing of HTTP: the pipeline gives it a way to compute (submit to the
engine) and to encode (the version's codec), and gets back futures of `Answer`s.
"""

from modelserve.cache.answers import Answer, Answers, CacheObserver, Outcome
from modelserve.cache.core import PredictionCache, VersionCache
from modelserve.service.caching import CachePolicy, cache_policy

__all__ = [
    "Answer",
    "Answers",
    "CacheObserver",
    "CachePolicy",
    "Outcome",
    "PredictionCache",
    "VersionCache",
    "cache_policy",
]
