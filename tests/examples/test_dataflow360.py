"""``examples/dataflow360`` (seed 004) end to end, as ``python examples/dataflow360/run.py`` runs it: Faker events
through Kafka, streaming objects into the raw layer, Spark transforms, the star schema in PostgreSQL. Checks
that every produced transaction is a raw row or a dead letter (never both, never lost), what the transforms
leave out, the star schema's row counts and keys, and the fact table's partitions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dataflow360"


def load_run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dataflow360_run", EXAMPLE / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_example_streams_transforms_and_loads_a_consistent_star_schema(kafka_url: str, pg_url: str) -> None:
    run = load_run()
    produced = 8_000
    landed = run.run_example(kafka_url, pg_url, transactions=produced, malformed=0.02)
    lake, rows = landed.lake, landed.warehouse
    dead = {topic.rsplit("-", 1)[-1]: count for topic, count in landed.dead_letters.items()}
    # every produced record is a row of the raw layer or a dead letter, exactly once
    assert lake["raw/users_events"] == run.USERS and dead["users"] == 0
    assert lake["raw/products_events"] == run.PRODUCTS and dead["products"] == 0
    assert lake["raw/transactions_events"] + dead["transactions"] == produced
    assert dead["transactions"] > 0  # amounts in text do not fit the declared schema
    # the Spark transforms keep the latest record of each id and leave out records without one
    assert lake["cleaned/users"] == run.USERS and lake["cleaned/products"] == run.PRODUCTS
    assert 0 < lake["cleaned/transactions"] < lake["raw/transactions_events"]
    # the star schema: every cleaned transaction has its user and product, so none is lost by the joins
    assert rows == {
        "dim_users": run.USERS,
        "dim_products": run.PRODUCTS,
        "fact_transactions": lake["cleaned/transactions"],
    }
    assert landed.orphans == 0
    # the checks on the star schema ran (in PostgreSQL, on Spark) and passed, but freshness, which only warns
    checks = landed.checks
    assert checks["fact_transactions.relationships_user_id"] == ("error", "passed", 0)
    assert checks["fact_transactions.relationships_product_id"] == ("error", "passed", 0)
    assert checks["dim_users.unique_user_id"] == ("error", "passed", 0)
    assert checks["users.unique_user_id"] == ("error", "passed", 0)
    assert checks["fact_transactions.freshness_ts"] == ("warn", "failed", 1)
    assert [name for name, (_, status, _) in checks.items() if status != "passed"] == ["fact_transactions.freshness_ts"]
    assert len(checks) == 16
    assert landed.partitions and all(p.startswith("fact_transactions_p") for p in landed.partitions)
