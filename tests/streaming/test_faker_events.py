"""Fake events: seeded, realistic fields, about 200 bytes, keyed by id, with a chosen share of malformed records."""

from __future__ import annotations

import doctest
import itertools
import json
from datetime import UTC, datetime

import pytest

from sluice.streaming import faker_events
from sluice.streaming.faker_events import SCHEMAS, event_block

FIELDS = {
    "transactions": ["transaction_id", "user_id", "product_id", "amount", "currency", "ts", "status", "channel", "country"],
    "users": ["user_id", "name", "email", "country", "city", "signup_ts"],
    "products": ["product_id", "name", "category", "brand", "price", "stock"],
}


def test_the_module_examples_hold() -> None:
    result = doctest.testmod(faker_events)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("schema", SCHEMAS)
def test_every_record_is_a_json_object_with_the_schemas_fields_keyed_by_its_id(schema: str) -> None:
    block = event_block(schema, seed=3, block=2, size=1000)
    records = [json.loads(value) for value in block.values]
    assert all(list(record) == FIELDS[schema] for record in records)
    id_field = FIELDS[schema][0]
    assert [record[id_field] for record in records] == list(range(2 * faker_events.BLOCK + 1, 2 * faker_events.BLOCK + 1001))
    assert block.keys == [str(record[id_field]).encode() for record in records]
    assert block.malformed == 0


def test_transactions_are_about_200_bytes_with_iso_utc_event_times_rising_with_the_id() -> None:
    block = event_block("transactions", seed=1, block=0, size=5000, start=datetime(2025, 6, 1, tzinfo=UTC), spacing_ms=10)
    assert 170 <= sum(map(len, block.values)) / 5000 <= 230
    times = [datetime.fromisoformat(json.loads(v)["ts"]) for v in block.values]
    assert times[0].isoformat().startswith("2025-06-01T00:00:00") and times[0].tzinfo == UTC
    assert all(abs((b - a).total_seconds()) <= 0.02 for a, b in itertools.pairwise(times))
    assert json.loads(block.values[0])["ts"].endswith("Z")
    statuses = {json.loads(v)["status"] for v in block.values}
    assert statuses == {"completed", "pending", "refunded", "failed"}


def test_the_same_seed_gives_the_same_records_and_another_seed_others() -> None:
    assert event_block("users", 5, 0, 300, 0.1).values == event_block("users", 5, 0, 300, 0.1).values
    assert event_block("users", 5, 0, 300).values != event_block("users", 6, 0, 300).values


@pytest.mark.parametrize("schema", SCHEMAS)
def test_malformed_records_are_not_json_lack_their_id_or_have_text_for_a_number(schema: str) -> None:
    block = event_block(schema, seed=9, block=0, size=4000, malformed=0.05)
    assert 120 <= block.malformed <= 280
    bad = []
    for index, value in enumerate(block.values):
        try:
            record = json.loads(value)
        except ValueError:
            bad.append(index)
            continue
        if FIELDS[schema][0] not in record or isinstance(record.get("amount", record.get("price", 0)), str):
            bad.append(index)
    assert bad == block.malformed_at


def test_an_unknown_schema_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown event schema 'orders'"):
        event_block("orders", 1, 0, 1)
