"""Caches and rings bounded by their size in bytes, so a long-lived process levels off.

A server or worker sees an unbounded number of runs and events; whatever it keeps per run or per
event must be evicted by size, not by count (a 2,000-object run's detail is 500 times a 4-object
run's). Sizes are what the caller says an entry costs: the bytes it holds plus a fixed overhead for
the Python objects around them.

>>> cache = ByteLru[str, bytes](max_bytes=10, size_of=len)
>>> cache.put("a", b"12345"); cache.put("b", b"123456")
>>> cache.get("a") is None, cache.get("b"), cache.bytes
(True, b'123456', 6)
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


class ByteLru(Generic[K, V]):
    """A thread-safe least-recently-used mapping holding at most ``max_bytes`` (by ``size_of``).

    An entry larger than the whole budget is not kept.
    """

    def __init__(self, max_bytes: int, size_of: Callable[[V], int]) -> None:
        self.max_bytes = max_bytes
        self.size_of = size_of
        self.bytes = 0
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: K, value: V) -> None:
        size = self.size_of(value)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            if size > self.max_bytes:
                return
            self._entries[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self.bytes -= evicted

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries


class ByteRing(Generic[T]):
    """The newest items whose sizes add up to at most ``max_bytes`` (and at most ``max_items``); not thread-safe.

    The oldest items go first; the newest item is always kept, however large.
    """

    def __init__(self, max_bytes: int, size_of: Callable[[T], int], max_items: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.max_items = max_items
        self.size_of = size_of
        self.bytes = 0
        self._items: deque[tuple[T, int]] = deque()

    def extend(self, items: list[T]) -> None:
        for item in items:
            size = self.size_of(item)
            self._items.append((item, size))
            self.bytes += size
        while len(self._items) > 1 and (
            self.bytes > self.max_bytes or (self.max_items is not None and len(self._items) > self.max_items)
        ):
            self.bytes -= self._items.popleft()[1]

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Iterator[T]:
        return (item for item, _ in self._items)

    def __getitem__(self, index: int) -> T:
        return self._items[index][0]
