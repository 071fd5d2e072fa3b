"""``examples/etl-cloud`` (seed 003) end to end, as ``python examples/etl-cloud/run.py`` runs it: a REST API, a
PostgreSQL table and CSV, JSON and Parquet files through the S3 lake's three layers into the warehouse's
staging / analytics / metrics schemas. Checks the lake's datasets, the star schema's row counts and keys (every
fact's dimension keys exist in the dimensions), the fact table's monthly partitions and the metrics' totals."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import psycopg
import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.s3]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "etl-cloud"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"etl_cloud_{name}", EXAMPLE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def one(url: str, query: str) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def test_the_example_lands_every_layer_and_a_consistent_star_schema(pg_url: str, s3_url: str) -> None:
    run = load("run")
    data = load("shop_data")
    items = data.order_items()
    lines = sum(1 for item in items if item["quantity"] > 0)
    seen: list[object] = []

    def check(landed: object) -> None:
        lake: dict[str, dict[str, int]] = landed.lake  # type: ignore[attr-defined]
        rows: dict[str, int] = landed.warehouse  # type: ignore[attr-defined]
        url: str = landed.database_url  # type: ignore[attr-defined]
        raw, cleaned, enriched = (next(v for k, v in lake.items() if k.endswith(suffix)) for suffix in run.LAYERS.values())
        assert raw == {
            "customers": len(data.customers()),
            "orders": len(data.orders()),
            "products": len(data.products()),
            "stores": len(data.stores()),
            "categories": len(data.categories()),
            "order_items": len(items),
        }
        # the cleaned layer deduplicates (a customer sent twice, a store listed twice) and drops empty lines
        assert cleaned == {
            "clean_customers": data.CUSTOMERS,
            "clean_orders": data.ORDERS,
            "clean_products": data.PRODUCTS,
            "clean_stores": data.STORES,
            "clean_categories": len(data.CATEGORIES),
            "clean_order_items": lines,
        }
        assert enriched == {"order_lines": lines, "customer_orders": data.CUSTOMERS, "fact_orders": lines}
        for schema in ("staging", "analytics", "metrics"):
            assert any(table.startswith(f"{schema}.") for table in rows), schema
        assert rows["analytics.dim_customers"] == data.CUSTOMERS
        assert rows["analytics.dim_products"] == data.PRODUCTS
        assert rows["analytics.dim_stores"] == data.STORES
        assert rows["analytics.fact_orders"] == lines
        assert landed.partitions == ["fact_orders_p2026_09", "fact_orders_p2026_10", "fact_orders_p2026_11"]  # type: ignore[attr-defined]
        # key integrity: every fact's foreign keys exist in the dimensions, and the dimensions' keys are unique
        for dim, key in (("dim_customers", "customer_id"), ("dim_products", "product_id"), ("dim_stores", "store_id")):
            orphans = one(
                url,
                f"SELECT count(*) FROM analytics.fact_orders f LEFT JOIN analytics.{dim} d USING ({key}) WHERE d.{key} IS NULL",
            )
            assert orphans == 0, dim
            assert one(url, f"SELECT count(*) - count(DISTINCT {key}) FROM analytics.{dim}") == 0, dim
        assert one(url, "SELECT relkind FROM pg_class WHERE oid = 'analytics.fact_orders'::regclass") == "p"
        # the customer sent twice keeps its newer city
        assert one(url, "SELECT city FROM analytics.dim_customers WHERE customer_id = 7") == "Marseille"
        fact_total = one(url, "SELECT sum(amount) FROM analytics.fact_orders")
        assert one(url, "SELECT sum(revenue) FROM metrics.daily_revenue") == fact_total
        assert one(url, "SELECT sum(revenue) FROM metrics.monthly_category_revenue") == fact_total
        assert one(url, "SELECT sum(lifetime_value) FROM analytics.dim_customers") == fact_total
        seen.append(landed)

    run.run_example(pg_url, s3_url, check=check)
    assert len(seen) == 1
    # run.py drops what it made: the database and the buckets are gone
    name = seen[0].database_url.rsplit("/", 1)[1]  # type: ignore[attr-defined]
    assert one(pg_url, f"SELECT count(*) FROM pg_database WHERE datname = '{name}'") == 0
    buckets = {info.base_name for info in run.s3(s3_url).get_file_info(run.pafs.FileSelector("/"))}
    assert not buckets & set(seen[0].lake)  # type: ignore[attr-defined]
