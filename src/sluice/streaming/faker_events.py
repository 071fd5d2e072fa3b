"""Seeded fake events for Kafka topics (``sluice produce faker``): users, transactions and products as JSON values of
about 200 bytes, keyed by the entity's id, with a chosen share of malformed records.

>>> block = event_block("transactions", seed=7, block=0, size=2, malformed=0.0)
>>> [json.loads(value)["transaction_id"] for value in block.values], block.keys
([1, 2], [b'1', b'2'])

The same approach as the Faker source (:mod:`sluice.connectors.faker_source`, whose pools and weights it reuses):
Faker fills small pools of names once; numpy draws, per block of records, which pool entries and numbers each record
gets; the JSON text is assembled column by column with Arrow's string kernels (pool strings are JSON-escaped once),
so there is no Python work per field and a block of 50,000 records takes a few tens of milliseconds. Block ``k``
always comes from the seed sequence ``(seed, schema, k)``: the same seed gives the same records.

Fields (event time ``ts`` and ``signup_ts`` are ISO 8601 UTC with milliseconds; ``start`` is the event time of the
first record, later ones follow ``spacing_ms`` apart with up to one spacing of jitter):

- users: ``user_id, name, email, country, city, signup_ts``
- transactions: ``transaction_id, user_id, product_id, amount, currency, ts, status, channel, country``
- products: ``product_id, name, category, brand, price, stock``

A malformed record (share ``malformed``) is, in turn, JSON cut short, a record without its id, or a record whose
amount or price is text: the three kinds of dead letter a consumer meets.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sluice.connectors.faker_source import (
    ADJECTIVES,
    CATEGORIES,
    CHANNELS,
    COUNTRIES,
    CURRENCIES,
    EMAIL_DOMAINS,
    STATUSES,
    Rng,
    _pick,
    _pick_within,
    pools,
)
from sluice.streaming import DEFAULT_EVENT_START, EVENT_SCHEMAS

SCHEMAS, DEFAULT_START = EVENT_SCHEMAS, DEFAULT_EVENT_START
BLOCK = 50_000
USERS, PRODUCTS = 10_000, 1_000


@dataclass(frozen=True, slots=True)
class EventBlock:
    """One block of records: their keys and JSON values (bytes), and the positions of the malformed ones."""

    keys: list[bytes]
    values: list[bytes]
    malformed_at: list[int]

    @property
    def malformed(self) -> int:
        """How many records of the block are malformed."""
        return len(self.malformed_at)


def event_block(
    schema: str,
    seed: int,
    block: int,
    size: int = BLOCK,
    malformed: float = 0.0,
    start: datetime = DEFAULT_START,
    spacing_ms: float = 1.0,
    first_id: int = 1,
) -> EventBlock:
    """Records ``block * BLOCK + 1`` to ``block * BLOCK + size`` of ``schema``, their ids counting from ``first_id``
    (record ``k`` has id ``first_id + k - 1``; the rest of a record depends on the seed and ``k`` only).

    ``malformed`` is the share (0..1) of records made malformed; ``start``/``spacing_ms`` set event times.
    Raises ValueError for an unknown schema.
    """
    if schema not in SCHEMAS:
        raise ValueError(f"unknown event schema {schema!r}; use one of {', '.join(SCHEMAS)}")
    rng = np.random.default_rng([seed, SCHEMAS.index(schema), block])
    first = block * BLOCK
    ids = pa.array(np.arange(first + first_id, first + first_id + size, dtype=np.int64))
    clock = _Clock(start, spacing_ms, first)
    text = _BUILDERS[schema](rng, ids, seed, clock)
    keys = pc.cast(pc.cast(ids, pa.string()), pa.binary()).to_pylist()
    values: list[bytes] = pc.cast(text, pa.binary()).to_pylist()
    bad = np.flatnonzero(rng.random(size) < malformed) if malformed > 0 else np.empty(0, dtype=np.int64)
    malformed_at = bad.tolist()
    for n, index in enumerate(malformed_at):
        values[index] = _malformed(values[index], n % 3)
    return EventBlock(keys, values, malformed_at)


@dataclass(frozen=True, slots=True)
class _Clock:
    start: datetime
    spacing_ms: float
    first: int

    def times(self, rng: Rng, n: int) -> pa.Array:
        """ISO 8601 UTC text with milliseconds, rising with the record number (jitter within one spacing)."""
        base = np.int64(int(self.start.timestamp() * 1000))
        offsets = ((np.arange(self.first, self.first + n) + rng.random(n)) * self.spacing_ms).astype(np.int64)
        stamps = pa.array(base + offsets, pa.int64()).cast(pa.timestamp("ms"))
        text = pc.utf8_replace_slice(pc.cast(stamps, pa.string()), 10, 11, "T")  # 2024-01-01 00:00:00.000, with a T
        return pc.binary_join_element_wise('"', text, 'Z"', "")


def _malformed(value: bytes, kind: int) -> bytes:
    if kind == 0:
        return value[: len(value) // 2]  # cut short: not JSON
    if kind == 1:
        return b"{" + value[value.index(b",") + 1 :].lstrip()  # the id field left out
    for field in (b'"amount": ', b'"price": '):
        head, found, tail = value.partition(field)
        if found:  # the number replaced by text
            return head + field + b'"n/a"' + tail[tail.index(b",") :]
    return value[: len(value) // 2]


def _quoted(strings: pa.Array) -> pa.Array:
    """JSON string literals of ``strings`` (which hold no quote, backslash or control character)."""
    return pc.binary_join_element_wise('"', strings, '"', "")


def _json_strings(values: list[str]) -> pa.Array:
    """JSON string literals, escaped once: for pools and weighted choices, taken per record afterwards."""
    return pa.array([json.dumps(value) for value in values])


def _object(fields: list[tuple[str, pa.Array]]) -> pa.Array:
    """``{"name": value, ...}`` per row from columns of JSON text."""
    parts: list[pa.Array | str] = []
    for n, (name, column) in enumerate(fields):
        parts += [("{" if n == 0 else ", ") + json.dumps(name) + ": ", column]
    parts.append("}")
    return pc.binary_join_element_wise(*parts, "")


def _numbers(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _chosen(rng: Rng, weighted: tuple[tuple[str, float], ...], n: int) -> pa.Array:
    picked, _ = _pick(rng, weighted, n)
    return _quoted(picked)


def _users(rng: Rng, ids: pa.Array, seed: int, clock: _Clock) -> pa.Array:
    n, pool = len(ids), pools(seed)
    first = pool.first_names.take(pa.array(rng.integers(0, len(pool.first_names), size=n)))
    last = pool.last_names.take(pa.array(rng.integers(0, len(pool.last_names), size=n)))
    domain, _ = _pick(rng, EMAIL_DOMAINS, n)
    local = pc.binary_join_element_wise(pc.utf8_lower(first), pc.utf8_lower(pc.replace_substring(last, " ", "")), ".")
    email = pc.binary_join_element_wise(local, pc.cast(ids, pa.string()), "@", domain, "")
    country, index = _pick(rng, tuple((name, weight) for name, (weight, _) in COUNTRIES.items()), n)
    city = _pick_within(rng, [cities for _, cities in COUNTRIES.values()], index)
    signup = _Clock(clock.start, clock.spacing_ms * 1000, clock.first).times(rng, n)  # signed up before they act
    fields = [
        ("user_id", pc.cast(ids, pa.string())),
        ("name", _quoted(_escaped(pc.binary_join_element_wise(first, last, " ")))),
        ("email", _quoted(_escaped(email))),
        ("country", _quoted(country)),
        ("city", _quoted(city)),
        ("signup_ts", signup),
    ]
    return _object(fields)


def _escaped(strings: pa.Array) -> pa.Array:
    """Faker's names may hold an apostrophe, never a quote or backslash; escape those two anyway."""
    return pc.replace_substring(pc.replace_substring(strings, "\\", "\\\\"), '"', '\\"')


def _transactions(rng: Rng, ids: pa.Array, seed: int, clock: _Clock) -> pa.Array:
    n = len(ids)
    amount = np.maximum(np.round(rng.lognormal(mean=3.6, sigma=0.9, size=n), 2), 0.5)
    country, _ = _pick(rng, tuple((name, weight) for name, (weight, _) in COUNTRIES.items()), n)
    fields = [
        ("transaction_id", pc.cast(ids, pa.string())),
        ("user_id", _numbers(rng.integers(1, USERS + 1, size=n))),
        ("product_id", _numbers(rng.integers(1, PRODUCTS + 1, size=n))),
        ("amount", _numbers(amount)),
        ("currency", _chosen(rng, CURRENCIES, n)),
        ("ts", clock.times(rng, n)),
        ("status", _chosen(rng, STATUSES, n)),
        ("channel", _chosen(rng, CHANNELS, n)),
        ("country", _quoted(country)),
    ]
    return _object(fields)


def _products(rng: Rng, ids: pa.Array, seed: int, clock: _Clock) -> pa.Array:
    n, pool = len(ids), pools(seed)
    names = list(CATEGORIES)
    category, index = _pick(rng, tuple((name, CATEGORIES[name][0]) for name in names), n)
    median = np.array([CATEGORIES[name][1] for name in names])[index]
    adjective = pa.array(ADJECTIVES).take(pa.array(rng.integers(0, len(ADJECTIVES), size=n)))
    noun = _pick_within(rng, [CATEGORIES[name][2] for name in names], index)
    brand = _json_strings(pool.brands.to_pylist()).take(pa.array(rng.integers(0, len(pool.brands), size=n)))
    fields = [
        ("product_id", pc.cast(ids, pa.string())),
        ("name", _quoted(pc.binary_join_element_wise(adjective, noun, " "))),
        ("category", _quoted(category)),
        ("brand", brand),
        ("price", _numbers(np.round(median * rng.lognormal(0.0, 0.5, size=n), 2))),
        ("stock", _numbers(rng.integers(0, 500, size=n))),
    ]
    return _object(fields)


_BUILDERS: dict[str, Callable[[Rng, pa.Array, int, _Clock], pa.Array]] = {
    "transactions": _transactions,
    "users": _users,
    "products": _products,
}
