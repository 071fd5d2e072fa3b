"""Caches and rings bounded by bytes: the oldest go first, the total never exceeds the budget."""

from __future__ import annotations

from sluice.bounded import ByteLru, ByteRing


def test_lru_evicts_the_least_recently_used_until_under_budget() -> None:
    cache = ByteLru[str, bytes](max_bytes=100, size_of=len)
    for index in range(50):
        cache.put(f"k{index}", bytes(30))
        assert cache.bytes <= 100
    assert len(cache) == 3 and cache.bytes == 90
    assert cache.get("k47") is not None  # now the most recently used
    cache.put("new", bytes(30))
    assert "k48" not in cache and "k47" in cache and "new" in cache


def test_lru_replaces_a_key_and_refuses_an_entry_bigger_than_the_budget() -> None:
    cache = ByteLru[str, bytes](max_bytes=100, size_of=len)
    cache.put("a", bytes(60))
    cache.put("a", bytes(10))
    assert cache.bytes == 10 and len(cache) == 1
    cache.put("huge", bytes(101))
    assert "huge" not in cache and cache.bytes == 10


def test_ring_keeps_the_newest_items_within_bytes_and_count() -> None:
    ring = ByteRing[bytes](max_bytes=100, size_of=len, max_items=1000)
    for index in range(100):
        ring.extend([bytes([index]) * 7])
        assert ring.bytes <= 100
    assert [item[0] for item in ring] == list(range(86, 100))
    assert ring[0][0] == 86 and len(ring) == 14
    counted = ByteRing[bytes](max_bytes=10**6, size_of=len, max_items=3)
    counted.extend([b"a", b"b", b"c", b"d"])
    assert list(counted) == [b"b", b"c", b"d"]
    big = ByteRing[bytes](max_bytes=5, size_of=len)
    big.extend([b"x" * 50])
    assert list(big) == [b"x" * 50]  # the newest is kept, however large
