"""Faker source: realistic synthetic users, transactions and products, the same rows for the same seed.

``{type: faker, schema: transactions, rows: 100000, seed: 7, users: 1000}``

Numeric and categorical columns are drawn with numpy, vectorised; Faker only fills small pools of names
and brands that rows pick from, so a million rows take a second, not minutes. Rows are generated in
fixed blocks, each from its own seed, so the output depends on the options alone (and on the installed
Faker version, which supplies the name pools).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import faker
import msgspec
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from sluice.connectors.base import Source
from sluice.connectors.batching import stream
from sluice.connectors.plugins import FakerOptions

BLOCK_ROWS = 50_000
GENERATOR_VERSION = 1
TX_START = np.datetime64("2024-01-01T00:00:00", "us")
TX_SPAN_US = 366 * 86_400_000_000  # 2024 is a leap year
SIGNUP_START, SIGNUP_DAYS = np.datetime64("2021-01-01", "D"), 4 * 365
BIRTH_START, BIRTH_DAYS = np.datetime64("1945-01-01", "D"), 61 * 365

COUNTRIES: dict[str, tuple[float, tuple[str, ...]]] = {
    "United States": (0.34, ("New York", "Los Angeles", "Chicago", "Houston", "Phoenix", "Seattle", "Boston", "Denver")),
    "United Kingdom": (0.12, ("London", "Manchester", "Birmingham", "Leeds", "Glasgow", "Bristol")),
    "Germany": (0.11, ("Berlin", "Hamburg", "Munich", "Cologne", "Frankfurt", "Stuttgart")),
    "France": (0.10, ("Paris", "Lyon", "Marseille", "Toulouse", "Nice", "Bordeaux")),
    "Canada": (0.08, ("Toronto", "Montreal", "Vancouver", "Calgary", "Ottawa")),
    "Spain": (0.07, ("Madrid", "Barcelona", "Valencia", "Seville", "Bilbao")),
    "Italy": (0.06, ("Rome", "Milan", "Naples", "Turin", "Florence")),
    "Netherlands": (0.05, ("Amsterdam", "Rotterdam", "Utrecht", "The Hague")),
    "Australia": (0.04, ("Sydney", "Melbourne", "Brisbane", "Perth")),
    "Japan": (0.03, ("Tokyo", "Osaka", "Yokohama", "Kyoto")),
}
EMAIL_DOMAINS = (
    ("gmail.com", 0.45),
    ("yahoo.com", 0.15),
    ("outlook.com", 0.15),
    ("hotmail.com", 0.1),
    ("icloud.com", 0.1),
    ("proton.me", 0.05),
)
CURRENCIES = (("USD", 0.55), ("EUR", 0.25), ("GBP", 0.12), ("CAD", 0.05), ("AUD", 0.03))
STATUSES = (("completed", 0.85), ("pending", 0.07), ("refunded", 0.05), ("failed", 0.03))
CHANNELS = (("web", 0.45), ("mobile", 0.4), ("store", 0.1), ("partner", 0.05))
CATEGORIES: dict[str, tuple[float, float, tuple[str, ...]]] = {  # weight, median price, nouns
    "Electronics": (0.2, 120.0, ("Headphones", "Speaker", "Charger", "Monitor", "Keyboard", "Camera", "Tablet")),
    "Books": (0.15, 15.0, ("Novel", "Cookbook", "Biography", "Guide", "Atlas", "Anthology")),
    "Home": (0.15, 40.0, ("Lamp", "Rug", "Vase", "Pillow", "Blanket", "Clock", "Mirror")),
    "Clothing": (0.15, 35.0, ("Jacket", "Sweater", "Shirt", "Jeans", "Scarf", "Sneakers")),
    "Sports": (0.1, 45.0, ("Yoga Mat", "Dumbbell", "Bottle", "Backpack", "Racket", "Helmet")),
    "Toys": (0.1, 25.0, ("Puzzle", "Robot", "Board Game", "Kite", "Doll", "Train Set")),
    "Beauty": (0.08, 20.0, ("Serum", "Lotion", "Perfume", "Shampoo", "Lip Balm")),
    "Grocery": (0.07, 8.0, ("Coffee", "Tea", "Olive Oil", "Honey", "Chocolate", "Granola")),
}
ADJECTIVES = ("Classic", "Compact", "Deluxe", "Eco", "Ergonomic", "Essential", "Premium", "Smart", "Ultra", "Vintage", "Wireless")


@dataclass(frozen=True, slots=True)
class Pools:
    """Faker-made values that rows draw from."""

    first_names: pa.Array
    last_names: pa.Array
    brands: pa.Array


@lru_cache(maxsize=8)
def pools(seed: int) -> Pools:
    fake = faker.Faker("en_US")
    fake.seed_instance(seed)
    return Pools(
        first_names=pa.array(sorted({fake.first_name() for _ in range(600)})),
        last_names=pa.array(sorted({fake.last_name() for _ in range(1000)})),
        brands=pa.array(sorted({fake.last_name() + suffix for suffix in ("", " & Co", " Labs", " Goods") for _ in range(20)})),
    )


Rng = np.random.Generator
IntArray = npt.NDArray[np.int64]


def _pick(rng: Rng, weighted: Sequence[tuple[str, float]], n: int) -> tuple[pa.Array, IntArray]:
    """Draw ``n`` values by weight; returns them and the drawn indices."""
    weights = np.array([weight for _, weight in weighted])
    index = rng.choice(len(weighted), size=n, p=weights / weights.sum())
    return pa.array([value for value, _ in weighted]).take(pa.array(index)), index


def _pick_within(rng: Rng, groups: Sequence[Sequence[str]], group_index: IntArray) -> pa.Array:
    """For each row, a uniformly drawn member of its group (a city of the row's country, say)."""
    sizes = np.array([len(group) for group in groups])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    position = offsets[group_index] + (rng.random(len(group_index)) * sizes[group_index]).astype(np.int64)
    return pa.array([member for group in groups for member in group]).take(pa.array(position))


def _ids(start: int, n: int) -> pa.Array:
    return pa.array(np.arange(start + 1, start + n + 1, dtype=np.int64))


def _dates(rng: Rng, start: np.datetime64, days: int, n: int) -> pa.Array:
    return pa.array(start + rng.integers(0, days, size=n).astype("timedelta64[D]"))


def users(rng: Rng, start: int, n: int, options: dict[str, Any], pool: Pools) -> pa.RecordBatch:
    first = pool.first_names.take(pa.array(rng.integers(0, len(pool.first_names), size=n)))
    last = pool.last_names.take(pa.array(rng.integers(0, len(pool.last_names), size=n)))
    ids = _ids(start, n)
    domain, _ = _pick(rng, EMAIL_DOMAINS, n)
    local = pc.binary_join_element_wise(pc.utf8_lower(first), pc.utf8_lower(pc.replace_substring(last, " ", "")), ".")
    email = pc.binary_join_element_wise(local, pc.cast(ids, pa.string()), "@", domain, "")
    country, country_index = _pick(rng, [(name, weight) for name, (weight, _) in COUNTRIES.items()], n)
    city = _pick_within(rng, [cities for _, cities in COUNTRIES.values()], country_index)
    return pa.record_batch(
        {
            "user_id": ids,
            "first_name": first,
            "last_name": last,
            "email": email,
            "country": country,
            "city": city,
            "signup_date": _dates(rng, SIGNUP_START, SIGNUP_DAYS, n),
            "birth_date": _dates(rng, BIRTH_START, BIRTH_DAYS, n),
            "is_active": pa.array(rng.random(n) < 0.85),
        },
        schema=SCHEMAS["users"],
    )


def transactions(rng: Rng, start: int, n: int, options: dict[str, Any], pool: Pools) -> pa.RecordBatch:
    total = max(int(options["rows"]), 1)
    # Spread rows evenly over the year with jitter, so created_at rises with transaction_id across blocks.
    slot = TX_SPAN_US / total
    offsets = ((np.arange(start, start + n) + rng.random(n)) * slot).astype(np.int64)
    amount = np.round(rng.lognormal(mean=3.6, sigma=0.9, size=n), 2)
    return pa.record_batch(
        {
            "transaction_id": _ids(start, n),
            "user_id": pa.array(rng.integers(1, int(options["users"]) + 1, size=n, dtype=np.int64)),
            "product_id": pa.array(rng.integers(1, int(options["products"]) + 1, size=n, dtype=np.int64)),
            "amount": pa.array(np.maximum(amount, 0.5)),
            "currency": _pick(rng, CURRENCIES, n)[0],
            "status": _pick(rng, STATUSES, n)[0],
            "channel": _pick(rng, CHANNELS, n)[0],
            "created_at": pa.array(TX_START + offsets.astype("timedelta64[us]")),
        },
        schema=SCHEMAS["transactions"],
    )


def products(rng: Rng, start: int, n: int, options: dict[str, Any], pool: Pools) -> pa.RecordBatch:
    names = list(CATEGORIES)
    category, index = _pick(rng, [(name, CATEGORIES[name][0]) for name in names], n)
    median = np.array([CATEGORIES[name][1] for name in names])[index]
    adjective = pa.array(ADJECTIVES).take(pa.array(rng.integers(0, len(ADJECTIVES), size=n)))
    noun = _pick_within(rng, [CATEGORIES[name][2] for name in names], index)
    ids = _ids(start, n)
    return pa.record_batch(
        {
            "product_id": ids,
            "sku": pc.binary_join_element_wise("SKU-", pc.utf8_lpad(pc.cast(ids, pa.string()), 6, "0"), ""),
            "name": pc.binary_join_element_wise(adjective, noun, " "),
            "category": category,
            "brand": pool.brands.take(pa.array(rng.integers(0, len(pool.brands), size=n))),
            "price": pa.array(np.round(median * rng.lognormal(0.0, 0.5, size=n), 2)),
            "stock_quantity": pa.array(rng.integers(0, 500, size=n, dtype=np.int64)),
            "created_at": _dates(rng, SIGNUP_START, SIGNUP_DAYS, n),
        },
        schema=SCHEMAS["products"],
    )


Generator = Callable[[Rng, int, int, dict[str, Any], Pools], pa.RecordBatch]
GENERATORS: dict[str, Generator] = {"users": users, "transactions": transactions, "products": products}
SCHEMAS: dict[str, pa.Schema] = {
    "users": pa.schema(
        [
            ("user_id", pa.int64()),
            ("first_name", pa.string()),
            ("last_name", pa.string()),
            ("email", pa.string()),
            ("country", pa.string()),
            ("city", pa.string()),
            ("signup_date", pa.date32()),
            ("birth_date", pa.date32()),
            ("is_active", pa.bool_()),
        ]
    ),
    "transactions": pa.schema(
        [
            ("transaction_id", pa.int64()),
            ("user_id", pa.int64()),
            ("product_id", pa.int64()),
            ("amount", pa.float64()),
            ("currency", pa.string()),
            ("status", pa.string()),
            ("channel", pa.string()),
            ("created_at", pa.timestamp("us")),
        ]
    ),
    "products": pa.schema(
        [
            ("product_id", pa.int64()),
            ("sku", pa.string()),
            ("name", pa.string()),
            ("category", pa.string()),
            ("brand", pa.string()),
            ("price", pa.float64()),
            ("stock_quantity", pa.int64()),
            ("created_at", pa.date32()),
        ]
    ),
}


class FakerSource(Source[FakerOptions]):
    """``{type: faker, schema: users|transactions|products, rows: N, seed: S}``; ``users``/``products`` bound the ids."""

    def settings(self) -> dict[str, Any]:
        """The schema name and the numeric options (checked by :class:`FakerOptions`), as a plain dict."""
        return msgspec.structs.asdict(self.options)

    def read(self) -> pa.RecordBatchReader:
        settings = self.settings()
        return stream(SCHEMAS[settings["schema"]], generate(settings))

    def input_fingerprint(self) -> str | None:
        """A hash of the options: the same options always produce the same rows (None if they are invalid)."""
        settings = {**self.settings(), "generator": GENERATOR_VERSION, "faker": faker.VERSION}
        return hashlib.blake2b(json.dumps(settings, sort_keys=True).encode(), digest_size=16).hexdigest()


def generate(settings: dict[str, Any]) -> Iterator[pa.RecordBatch]:
    """Batches of ``BLOCK_ROWS`` rows; block ``k`` always comes from the seed sequence (seed, schema, k)."""
    name, rows, seed = settings["schema"], int(settings["rows"]), int(settings["seed"])
    generator, pool = GENERATORS[name], pools(seed)
    salt = list(GENERATORS).index(name)
    for block, start in enumerate(range(0, rows, BLOCK_ROWS)):
        rng = np.random.default_rng([seed, salt, block])
        yield generator(rng, start, min(BLOCK_ROWS, rows - start), settings, pool)
