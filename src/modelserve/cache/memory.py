"""`MemoryStore`: the in-process cache of one loaded version: LRU, TTL and a byte budget."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from modelserve.cache.answers import Answer, CacheObserver

# What one entry costs beyond its payload: the key, the Answer, the dict slot and the expiry.
ENTRY_OVERHEAD_BYTES = 200


class MemoryStore:
    """Answers of one model version in this process, least recently used evicted first.

    Bounded by `max_items` and `max_bytes` (payload plus `ENTRY_OVERHEAD_BYTES` per entry);
    an entry older than `ttl_s` is a miss and is dropped when met. `clock` is injectable so
    tests move time instead of sleeping. Single-threaded: used from the event loop only.
    """

    def __init__(
        self,
        model: str,
        *,
        ttl_s: float,
        max_items: int,
        max_bytes: int,
        observer: CacheObserver,
        clock: Callable[[], float],
    ) -> None:
        self.model = model
        self.ttl_s = ttl_s
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._observer = observer
        self._clock = clock
        # key -> (answer stored with outcome "hit", expiry on `clock`)
        self._entries: OrderedDict[bytes, tuple[Answer, float]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> Answer | None:
        """The stored answer, freshened in the LRU order; None when absent or expired."""
        found = self._entries.get(key)
        if found is None:
            return None
        answer, expires = found
        if self._clock() >= expires:
            self._drop(key, answer)
            self._observer.on_evicted(self.model, "ttl", 1)
            return None
        self._entries.move_to_end(key)
        return answer

    def put(self, key: bytes, answer: Answer) -> bool:
        """Store an answer (as a hit); False when it alone is over the byte budget."""
        cost = _cost(answer)
        if cost > self.max_bytes:
            return False
        stored = answer.as_outcome("hit")
        stored.result = None  # the output object is not kept: the bytes are the answer
        old = self._entries.pop(key, None)
        if old is not None:
            self._account(-_cost(old[0]))
        self._entries[key] = (stored, self._clock() + self.ttl_s)
        self._account(cost)
        evicted = 0
        entries = self._entries
        while len(entries) > self.max_items or self.bytes > self.max_bytes:
            _, (victim, _) = entries.popitem(last=False)
            self._account(-_cost(victim))
            evicted += 1
        if evicted:
            self._observer.on_evicted(self.model, "size", evicted)
        return True

    def purge(self) -> int:
        """Drop every answer; how many there were."""
        count = len(self._entries)
        self._entries.clear()
        self._account(-self.bytes)
        if count:
            self._observer.on_evicted(self.model, "purge", count)
        return count

    def _drop(self, key: bytes, answer: Answer) -> None:
        del self._entries[key]
        self._account(-_cost(answer))

    def _account(self, delta: int) -> None:
        if delta:
            self.bytes += delta
            self._observer.on_bytes(self.model, delta)


def _cost(answer: Answer) -> int:
    return len(answer.payload) + ENTRY_OVERHEAD_BYTES
