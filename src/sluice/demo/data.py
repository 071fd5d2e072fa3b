"""The demo's data files: realistic, a little messy, and the same bytes for the same sizes and seed.

Names, e-mails, cities and product names come from Sluice's own Faker source; ids, prices, dates and the
mess the standardize stage cleans up (duplicates, mixed-case e-mails, bad amounts, unknown users)
come from a :class:`random.Random` seeded alike, so a build is reproducible.

>>> files = make_data(users=50, transactions=200, seed=1)
>>> sorted(files) == sorted(DATA_FILES)
True
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import io
import itertools
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sluice.connectors.base import SourceContext
from sluice.project.model import SourceSpec

DATA_VERSION = 1  # bump when the generator changes, so existing demo folders get new files
DATA_FILES = (
    "users.csv",
    "transactions_2025.parquet",
    "transactions_web.jsonl",
    "products.json",
    "countries.csv",
    "fx_rates.csv",
)

# code, name (as the Faker source spells it), region, currency
COUNTRIES: tuple[tuple[str, str, str, str], ...] = (
    ("AU", "Australia", "Asia Pacific", "AUD"),
    ("BE", "Belgium", "Western Europe", "EUR"),
    ("CA", "Canada", "North America", "CAD"),
    ("CH", "Switzerland", "Western Europe", "CHF"),
    ("DE", "Germany", "Western Europe", "EUR"),
    ("ES", "Spain", "Southern Europe", "EUR"),
    ("FR", "France", "Western Europe", "EUR"),
    ("GB", "United Kingdom", "Northern Europe", "GBP"),
    ("IT", "Italy", "Southern Europe", "EUR"),
    ("JP", "Japan", "Asia Pacific", "JPY"),
    ("NL", "Netherlands", "Western Europe", "EUR"),
    ("PL", "Poland", "Eastern Europe", "PLN"),
    ("SE", "Sweden", "Northern Europe", "SEK"),
    ("US", "United States", "North America", "USD"),
)
# euros per unit of currency, as of the end of the data set
EUR_RATES = {
    "EUR": 1.0, "USD": 0.92, "GBP": 1.17, "CHF": 1.05, "SEK": 0.088, "PLN": 0.23,
    "CAD": 0.68, "JPY": 0.0062, "AUD": 0.61,
}  # fmt: skip
RATES_AS_OF = "2025-12-31"
YEAR_START = dt.datetime(2025, 1, 1)
STATUSES, STATUS_WEIGHTS = ("completed", "refunded", "failed", "pending"), (88, 6, 4, 2)
CATALOG_CURRENCIES, CATALOG_WEIGHTS = ("EUR", "USD", "GBP"), (70, 20, 10)


@dataclass(frozen=True, slots=True)
class User:
    user_id: int
    country: str
    currency: str
    signup: dt.date


@dataclass(frozen=True, slots=True)
class Product:
    product_id: int
    price_eur: float


def make_data(*, users: int, transactions: int, seed: int) -> dict[str, bytes]:
    """Every data file of the demo, by file name, as the bytes to write."""
    rng = random.Random(seed)
    user_rows, people = _users(users, seed, rng)
    product_rows, products = _products(max(40, users // 10), seed, rng)
    store, web = _transactions(transactions, people, products, rng)
    return {
        "users.csv": _csv(user_rows),
        "transactions_2025.parquet": _parquet(store),
        "transactions_web.jsonl": _jsonl(web),
        "products.json": _json_array(product_rows),
        "countries.csv": _csv(
            [{"country_code": c, "country_name": n, "region": r, "currency": cur} for c, n, r, cur in COUNTRIES]
        ),
        "fx_rates.csv": _csv(
            [{"currency": c, "rate_to_eur": rate, "as_of": RATES_AS_OF} for c, rate in sorted(EUR_RATES.items())]
        ),
    }


def fake_rows(schema: str, rows: int, seed: int) -> list[dict[str, Any]]:
    """Rows from Sluice's Faker source (the same code path as ``source: {type: faker}``)."""
    from sluice.connectors.plugins import FakerOptions
    from sluice.connectors.registry import open_source

    spec = SourceSpec("faker", FakerOptions(schema=schema, rows=rows, seed=seed))  # type: ignore[arg-type]
    table: pa.Table = open_source(spec, SourceContext(Path("."), {})).read().read_all()
    result: list[dict[str, Any]] = table.to_pylist()
    return result


# ----- users ---------------------------------------------------------------------------------------


def _users(count: int, seed: int, rng: random.Random) -> tuple[list[dict[str, Any]], list[User]]:
    rows: list[dict[str, Any]] = []
    people: list[User] = []
    countries = {name: (code, currency) for code, name, _, currency in COUNTRIES}
    for fake in fake_rows("users", count, seed):
        user_id = int(fake["user_id"])
        code, currency = countries.get(str(fake["country"]), ("??", "EUR"))  # an unknown country is dropped
        signup = dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(700))
        updated = datetime_of(signup) + dt.timedelta(days=rng.randrange(300), seconds=rng.randrange(86400))
        row = {
            "user_id": user_id,
            "first_name": fake["first_name"],
            "last_name": fake["last_name"],
            "email": _messy_email(str(fake["email"]), rng),
            "country_code": _messy_code(code, rng),
            "city": fake["city"],
            "birth_date": _birth_date(fake, rng),
            "signup_date": signup.isoformat(),
            "updated_at": updated.isoformat(sep=" "),
        }
        rows.append(row)
        people.append(User(user_id, code, currency, signup))
        if rng.random() < 0.03:  # an older copy of the same customer, from before an address change
            older = dict(
                row,
                city=str(fake["city"]).upper(),
                updated_at=(updated - dt.timedelta(days=rng.randrange(1, 90))).isoformat(sep=" "),
            )
            rows.insert(rng.randrange(len(rows)), older)
    if rows:
        rows.append(dict(rows[-1], user_id=None))  # a row without its id
    return rows, people


def _messy_email(email: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.01:
        return email.replace("@", " at ")
    if roll < 0.08:
        return email.title()
    if roll < 0.12:
        return f"  {email.upper()} "
    return email


def _messy_code(code: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.04:
        return code.lower()
    if roll < 0.06:
        return f" {code} "
    return code


def _birth_date(fake: dict[str, Any], rng: random.Random) -> str:
    value = fake["birth_date"]
    return "" if rng.random() < 0.004 or not isinstance(value, dt.date) else value.isoformat()


def datetime_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time())


# ----- products ------------------------------------------------------------------------------------


def _products(count: int, seed: int, rng: random.Random) -> tuple[list[dict[str, Any]], list[Product]]:
    rows: list[dict[str, Any]] = []
    products: list[Product] = []
    for fake in fake_rows("products", count, seed):
        product_id, price_eur = int(fake["product_id"]), float(fake["price"])
        currency = rng.choices(CATALOG_CURRENCIES, CATALOG_WEIGHTS)[0]
        sku, category = str(fake["sku"]), str(fake["category"])
        row: dict[str, Any] = {
            "product_id": product_id,
            "sku": f" {sku.lower()}" if rng.random() < 0.1 else sku,
            "name": fake["name"],
            "brand": fake["brand"],
            "category": f"{category.upper()} " if rng.random() < 0.2 else category,
            "price": round(price_eur / EUR_RATES[currency], 2),
            "currency": currency,
        }
        if rng.random() < 0.95:
            row["active"] = rng.random() < 0.92
        if rng.random() < 0.02:
            row["price"] = 0.0
        else:
            products.append(Product(product_id, price_eur))
        rows.append(row)
    if rows:
        rows.append(dict(rows[0]))  # the catalog lists one product twice
    return rows, products


# ----- transactions --------------------------------------------------------------------------------


def _transactions(
    count: int, people: Sequence[User], products: Sequence[Product], rng: random.Random
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Store and web transactions over 2025, busier in November and December; web ones sometimes sent twice."""
    if not people or not products:
        return [], []
    day_weights = [
        1.0 + (0.6 if day >= 304 else 0.0) + (0.25 if (YEAR_START + dt.timedelta(days=day)).weekday() >= 5 else 0.0)
        for day in range(365)
    ]
    product_weights = [1.0 / (rank + 5) for rank in range(len(products))]
    # customers buy only after signing up, some much more often than others
    customers = sorted(people, key=lambda user: (user.signup, user.user_id))
    signups = [datetime_of(user.signup) for user in customers]
    cumulative = list(itertools.accumulate(rng.lognormvariate(0.0, 0.9) for _ in customers))
    store: list[dict[str, Any]] = []
    web: list[dict[str, Any]] = []
    for transaction_id, day in enumerate(sorted(rng.choices(range(365), day_weights, k=count)), 1):
        created = YEAR_START + dt.timedelta(days=day, seconds=rng.randrange(8 * 3600, 22 * 3600))
        eligible = max(1, bisect.bisect_right(signups, created))
        index = min(eligible - 1, bisect.bisect_right(cumulative, rng.random() * cumulative[eligible - 1]))
        user, created = customers[index], max(created, signups[index])
        product = rng.choices(products, product_weights)[0]
        quantity = rng.choices((1, 2, 3, 4, 5), (70, 20, 7, 2, 1))[0]
        is_web = rng.random() < 0.35
        currency = "USD" if is_web and rng.random() < 0.1 else user.currency
        row: dict[str, Any] = {
            "transaction_id": transaction_id,
            "user_id": user.user_id,
            "product_id": product.product_id,
            "quantity": quantity,
            "amount": round(quantity * product.price_eur / EUR_RATES[currency], 2),
            "currency": currency,
            "status": rng.choices(STATUSES, STATUS_WEIGHTS)[0],
            "created_at": created,
        }
        roll = rng.random()
        if roll < 0.004:
            row["amount"] = -row["amount"]
        elif roll < 0.007:
            row["user_id"] = len(people) + rng.randrange(1, 1000)
        if is_web:
            web_row = dict(row, created_at=created.isoformat(sep=" "))
            web.append(web_row)
            if rng.random() < 0.01:
                web.append(dict(web_row))
        else:
            store.append(row)
    return store, web


# ----- writers -------------------------------------------------------------------------------------


def _csv(rows: Sequence[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def _json_array(rows: Sequence[dict[str, Any]]) -> bytes:
    return ("[\n" + ",\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n]\n").encode()


def _jsonl(rows: Sequence[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()


TRANSACTION_SCHEMA = pa.schema(
    [
        ("transaction_id", pa.int64()),
        ("user_id", pa.int64()),
        ("product_id", pa.int64()),
        ("quantity", pa.int32()),
        ("amount", pa.float64()),
        ("currency", pa.string()),
        ("status", pa.string()),
        ("created_at", pa.timestamp("us")),
    ]
)


def _parquet(rows: Sequence[dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(list(rows), schema=TRANSACTION_SCHEMA), buffer, compression="zstd")
    return buffer.getvalue()
