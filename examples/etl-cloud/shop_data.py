"""The example's data, generated deterministically (seeded): what the API serves, the PostgreSQL source table
and the CSV, JSON and Parquet files of ``data/`` (``python make_data.py`` rewrites them).

Some rows are dirty on purpose, for the cleaned layer to fix: a customer sent twice (its older version first),
e-mails in mixed case, a store listed twice with stray spaces, an order line with a quantity of 0.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

CUSTOMERS = 40
ORDERS = 240
PRODUCTS = 12
STORES = 5
CATEGORIES = ("books", "garden", "kitchen", "toys")
FIRST_DAY = dt.date(2026, 9, 1)
DAYS = 91  # September to November 2026: three monthly partitions of analytics.fact_orders
CITIES = ("Paris", "Lyon", "Lille", "Nantes", "Bordeaux")


def customers() -> list[dict[str, Any]]:
    """What ``GET /customers`` pages through: 41 records, customer 7 twice (its newer version last)."""
    rng = random.Random(3)
    rows = [
        {
            "id": i,
            "name": f"Customer {i:02d}",
            "email": f"Customer{i:02d}@Example.COM" if i % 4 == 0 else f"customer{i:02d}@example.com",
            "city": rng.choice(CITIES),
            "signup_date": (FIRST_DAY - dt.timedelta(days=rng.randrange(400))).isoformat(),
            "updated_at": "2026-08-01T00:00:00Z",
        }
        for i in range(1, CUSTOMERS + 1)
    ]
    rows.append({**rows[6], "city": "Marseille", "updated_at": "2026-10-15T09:30:00Z"})
    return rows


def orders() -> list[dict[str, Any]]:
    """What ``GET /orders`` pages through: 240 orders over September-November 2026."""
    rng = random.Random(5)
    return [
        {
            "order_id": 10000 + i,
            "customer_id": rng.randrange(1, CUSTOMERS + 1),
            "store_id": rng.randrange(1, STORES + 1),
            "order_date": (FIRST_DAY + dt.timedelta(days=rng.randrange(DAYS))).isoformat(),
            "status": rng.choice(("PAID", "paid", "shipped", "Shipped", "delivered")),
        }
        for i in range(ORDERS)
    ]


def products() -> list[tuple[int, str, int, str]]:
    """The PostgreSQL source table ``source.products``: id, name, category id, unit price (text: numeric)."""
    rng = random.Random(7)
    return [
        (i, f"Product {i:02d}", rng.randrange(1, len(CATEGORIES) + 1), f"{rng.randrange(300, 9000) / 100:.2f}")
        for i in range(1, PRODUCTS + 1)
    ]


def stores() -> list[tuple[int, str, str]]:
    """``data/stores.csv``: id, name, city; store 3 listed twice, once with stray spaces."""
    rows = [(i, f"Store {i}", CITIES[i - 1]) for i in range(1, STORES + 1)]
    return [*rows, (3, "  Store 3 ", " lille ")]


def categories() -> list[dict[str, Any]]:
    """``data/categories.json``."""
    return [
        {"category_id": i, "category": name, "vat_rate": 0.055 if name == "books" else 0.2}
        for i, name in enumerate(CATEGORIES, 1)
    ]


def order_items() -> list[dict[str, Any]]:
    """``data/order_items.parquet``: one to three lines per order; one line has a quantity of 0."""
    rng = random.Random(11)
    rows: list[dict[str, Any]] = []
    for order in orders():
        for line in range(1, rng.randrange(2, 5)):
            rows.append(
                {
                    "order_id": order["order_id"],
                    "line_no": line,
                    "product_id": rng.randrange(1, PRODUCTS + 1),
                    "quantity": rng.randrange(1, 6),
                    "discount": rng.choice((0.0, 0.0, 0.05, 0.1)),
                }
            )
    rows[17]["quantity"] = 0
    return rows
