"""The in-process store: least recently used out first, TTL, item and byte budgets."""

from __future__ import annotations

from modelserve.cache import Answer
from modelserve.cache.memory import ENTRY_OVERHEAD_BYTES, MemoryStore
from tests.cache.recorder import Clock, Recorder


def store(
    *, ttl_s: float = 10, max_items: int = 100, max_bytes: int = 10**6
) -> tuple[MemoryStore, Clock, Recorder]:
    clock, recorder = Clock(), Recorder()
    memory = MemoryStore(
        "m",
        ttl_s=ttl_s,
        max_items=max_items,
        max_bytes=max_bytes,
        observer=recorder,
        clock=clock,
    )
    return memory, clock, recorder


def answer(size: int, result: object = None) -> Answer:
    return Answer(b"x" * size, False, "miss", result)


def test_a_stored_answer_comes_back_as_a_hit_without_the_output_object() -> None:
    memory, _, _ = store()
    assert memory.get(b"k") is None
    memory.put(b"k", answer(3, result=object()))
    hit = memory.get(b"k")
    assert hit is not None
    assert (hit.payload, hit.outcome, hit.result) == (b"xxx", "hit", None)


def test_entries_expire_after_the_ttl() -> None:
    memory, clock, recorder = store(ttl_s=10)
    memory.put(b"k", answer(3))
    clock.now += 9.9
    assert memory.get(b"k") is not None
    clock.now += 0.1
    assert memory.get(b"k") is None
    assert recorder.evicted["ttl"] == 1
    assert len(memory) == 0 and memory.bytes == 0 and recorder.bytes == 0


def test_the_byte_budget_evicts_the_least_recently_used() -> None:
    cost = 100 + ENTRY_OVERHEAD_BYTES
    memory, _, recorder = store(max_bytes=3 * cost)
    for key in (b"a", b"b", b"c"):
        memory.put(key, answer(100))
    assert memory.bytes == 3 * cost == recorder.bytes
    assert memory.get(b"a") is not None  # a is now the most recently used
    memory.put(b"d", answer(100))
    assert memory.get(b"b") is None
    assert all(memory.get(k) is not None for k in (b"a", b"c", b"d"))
    assert memory.bytes <= 3 * cost and recorder.evicted["size"] == 1


def test_an_answer_over_the_whole_budget_is_not_stored_and_evicts_nothing() -> None:
    memory, _, _ = store(max_bytes=1000)
    memory.put(b"a", answer(10))
    assert not memory.put(b"big", answer(1000))
    assert memory.get(b"big") is None and memory.get(b"a") is not None


def test_the_item_budget_and_replacing_a_key() -> None:
    memory, _, recorder = store(max_items=2)
    memory.put(b"a", answer(10))
    memory.put(b"a", answer(20))  # replaced, not counted twice
    assert len(memory) == 1 and memory.bytes == 20 + ENTRY_OVERHEAD_BYTES
    memory.put(b"b", answer(10))
    memory.put(b"c", answer(10))
    assert len(memory) == 2 and memory.get(b"a") is None
    assert recorder.evicted["size"] == 1


def test_purge_empties_the_store() -> None:
    memory, _, recorder = store()
    memory.put(b"a", answer(10))
    memory.put(b"b", answer(10))
    assert memory.purge() == 2
    assert len(memory) == 0 and memory.bytes == 0 and recorder.bytes == 0
    assert recorder.evicted["purge"] == 2
