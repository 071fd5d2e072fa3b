from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sluice.connectors.base import SourceContext
from sluice.connectors.faker_source import BLOCK_ROWS, SCHEMAS, STATUSES, FakerSource
from sluice.connectors.registry import open_source
from sluice.errors import ConfigError
from sluice.project.model import SourceSpec


def faker_source(**options: Any) -> FakerSource:
    source = open_source(SourceSpec("faker", options), SourceContext(Path("."), {}))
    assert isinstance(source, FakerSource)
    return source


def generate(**options: Any) -> pa.Table:
    return faker_source(**options).read().read_all()


@pytest.mark.parametrize("schema", ["users", "transactions", "products"])
def test_each_schema_has_its_columns_and_row_count(schema: str) -> None:
    table = generate(schema=schema, rows=1234, seed=3)
    assert table.schema == SCHEMAS[schema]
    assert table.num_rows == 1234
    assert table.column(0).to_pylist() == list(range(1, 1235))
    for column in table.columns:
        assert column.null_count == 0


@pytest.mark.parametrize("schema", ["users", "transactions", "products"])
def test_same_seed_same_rows_other_seed_other_rows(schema: str) -> None:
    first = generate(schema=schema, rows=500, seed=11)
    assert generate(schema=schema, rows=500, seed=11).equals(first)
    assert not generate(schema=schema, rows=500, seed=12).equals(first)


def test_rows_cross_block_boundaries_and_stream_in_batches() -> None:
    batches = list(faker_source(schema="transactions", rows=BLOCK_ROWS + 7, seed=1).read())
    assert [batch.num_rows for batch in batches] == [BLOCK_ROWS, 7]
    ids = pa.Table.from_batches(batches).column("transaction_id")
    assert ids.to_pylist() == list(range(1, BLOCK_ROWS + 8))


def test_zero_rows_is_an_empty_table_with_the_schema() -> None:
    table = generate(schema="users", rows=0)
    assert table.num_rows == 0
    assert table.schema == SCHEMAS["users"]


def test_users_look_real() -> None:
    users = generate(schema="users", rows=2000, seed=5)
    emails = users.column("email").to_pylist()
    assert len(set(emails)) == len(emails)
    assert all(re.fullmatch(r"[a-z'\-]+\.[a-z'\-]+\d+@[a-z.]+", email) for email in emails)
    assert users.column("first_name").to_pylist()[0][0].isupper()
    signup = users.column("signup_date")
    assert pc.min(signup).as_py().year >= 2021
    assert pc.max(users.column("birth_date")).as_py() < pc.min(signup).as_py().replace(year=2010)
    active = pc.mean(users.column("is_active").cast(pa.float64())).as_py()
    assert 0.75 < active < 0.95
    pairs = set(zip(users.column("country").to_pylist(), users.column("city").to_pylist(), strict=True))
    assert ("France", "Paris") in pairs
    assert ("France", "London") not in pairs


def test_transactions_look_real() -> None:
    tx = generate(schema="transactions", rows=20_000, seed=9, users=50, products=7)
    assert pc.min(tx.column("user_id")).as_py() >= 1
    assert pc.max(tx.column("user_id")).as_py() == 50
    assert set(tx.column("product_id").to_pylist()) == set(range(1, 8))
    amounts = tx.column("amount").to_pylist()
    assert all(amount > 0 and round(amount, 2) == amount for amount in amounts)
    counts = {status: 0 for status, _ in STATUSES}
    for status in tx.column("status").to_pylist():
        counts[status] += 1
    assert max(counts, key=lambda status: counts[status]) == "completed"
    assert all(count > 0 for count in counts.values())
    created = tx.column("created_at").to_pylist()
    assert created == sorted(created)
    assert created[0].year == created[-1].year == 2024


def test_products_prices_depend_on_category() -> None:
    products = generate(schema="products", rows=5000, seed=2)
    assert products.column("sku").to_pylist()[:2] == ["SKU-000001", "SKU-000002"]
    means = {
        row["category"]: row["price_mean"] for row in products.group_by("category").aggregate([("price", "mean")]).to_pylist()
    }
    assert means["Electronics"] > means["Grocery"] * 5


def test_fingerprint_is_a_hash_of_the_options() -> None:
    base = faker_source(schema="users", rows=10, seed=1).input_fingerprint()
    assert faker_source(schema="users", rows=10, seed=1).input_fingerprint() == base
    assert faker_source(schema="users", rows=11, seed=1).input_fingerprint() != base
    assert faker_source(schema="users", rows=10, seed=2).input_fingerprint() != base
    assert faker_source(schema="transactions", rows=10, seed=1).input_fingerprint() != base


def test_unknown_schema_lists_the_available_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"schema: invalid enum value 'user'. Did you mean 'users'.*users, transactions, products"
    ):
        faker_source(schema="user", rows=1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rows": -1}, "rows: expected int >= 0, got -1"),
        ({"rows": "10"}, "rows: expected int, got str"),
        ({"rows": True}, "rows: expected int, got bool"),
        ({"users": 0}, "users: expected int >= 1, got 0"),
    ],
)
def test_bad_counts_are_refused_before_anything_runs(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        faker_source(schema="transactions", **options)
