"""Kafka records to Arrow: fast path, dead letters with reasons, declared and inferred schemas, metadata columns."""

from __future__ import annotations

import doctest
import json

import msgspec
import pyarrow as pa
import pytest

from sluice.errors import TerminalError
from sluice.streaming import records as records_module
from sluice.streaming.records import METADATA_TYPES, MISFIT_GUARD_MIN, Decoder, Record, RecordSettings

DECLARED = {"id": "int64", "amount": "float64", "name": "string"}


def records(*values: bytes | None, topic: str = "t") -> list[Record]:
    return [Record(value, offset_=i, topic_=topic) for i, value in enumerate(values)]


def objects(*rows: dict[str, object]) -> list[Record]:
    return records(*(json.dumps(row).encode() for row in rows))


def test_declared_schema_types_the_columns_ignores_undeclared_fields_and_nulls_missing_ones() -> None:
    decoded = Decoder(RecordSettings(schema=DECLARED)).decode(
        objects({"id": 1, "amount": 2, "name": "a", "extra": True}, {"id": 2, "amount": 1.5})
    )
    assert decoded.rejected == []
    assert decoded.batch.schema == pa.schema([("id", pa.int64()), ("amount", pa.float64()), ("name", pa.string())])
    assert decoded.batch.to_pylist() == [{"id": 1, "amount": 2.0, "name": "a"}, {"id": 2, "amount": 1.5, "name": None}]


def test_a_time_zone_aware_declared_column_holds_instants_offsets_converted_naive_values_utc() -> None:
    """A user's trial: ``timestamp[ms, tz=UTC]`` was an unknown column type."""
    settings = RecordSettings(schema={"ts": "timestamp[ms, tz=UTC]", "local": "timestamp[ms, tz=Europe/Paris]"})
    decoded = Decoder(settings).decode(
        objects(
            {"ts": "2024-05-01T12:00:00.250Z", "local": "2024-05-01T12:00:00Z"},
            {"ts": "2024-05-01T14:00:00+02:00", "local": "2024-05-01 12:00:00"},
            {"ts": "2024-05-01 12:00:00", "local": None},
        )
    )
    assert decoded.rejected == []
    assert decoded.batch.schema == pa.schema(
        [("ts", pa.timestamp("ms", tz="UTC")), ("local", pa.timestamp("ms", tz="Europe/Paris"))]
    )
    utc = [value.timestamp() for value in decoded.batch.column("ts").to_pylist()]
    noon = 1714564800.0  # 2024-05-01T12:00:00Z
    assert utc == [noon + 0.25, noon, noon]
    local = decoded.batch.column("local").to_pylist()
    assert [value.timestamp() for value in local[:2]] == [noon, noon] and local[2] is None
    assert str(local[0].tzinfo) == "Europe/Paris" and local[0].hour == 14


def test_values_that_are_not_one_json_object_are_rejected_with_the_reason_and_the_rest_stays_in_order() -> None:
    messages = records(
        b'{"id": 1}',
        b"{not json",
        b"[1, 2]",
        None,
        b"",
        b'{"id": 2}{"id": 3}',
        b"   ",
        b' {"id": 4}\n',
        b'{\n  "id": 5\n}',
        b"42",
    )
    decoded = Decoder(RecordSettings(schema={"id": "int64"})).decode(messages)
    assert decoded.batch.column("id").to_pylist() == [1, 4, 5]
    reasons = {r.index: r.reason for r in decoded.rejected}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 9]
    assert reasons[1].startswith("not valid JSON")
    assert reasons[2] == "not a JSON object: a list was found"
    assert reasons[3].startswith("no value (a tombstone)")
    assert reasons[9] == "not a JSON object: a int was found"


def test_a_value_that_does_not_fit_a_declared_type_is_rejected_alone() -> None:
    rows: list[dict[str, object]] = [{"id": i, "amount": 1.0} for i in range(100)]
    rows[37]["amount"] = "lots"
    rows[80]["id"] = "eighty"
    decoded = Decoder(RecordSettings(schema=DECLARED)).decode(objects(*rows))
    assert [r.index for r in decoded.rejected] == [37, 80]
    assert "does not fit the schema" in decoded.rejected[0].reason and "amount" in decoded.rejected[0].reason
    assert decoded.batch.column("id").to_pylist() == [i for i in range(100) if i not in (37, 80)]


def test_a_misfit_reason_names_the_column_its_declared_type_and_the_value() -> None:
    settings = RecordSettings(schema={"user_id": "string", "ts": "date32", "amount": "decimal(10,2)"})
    decoded = Decoder(settings).decode(
        objects({"user_id": 7}, {"ts": "2024-01-01T00:00:00.001Z"}, {"amount": "abc"}, {"user_id": "u", "ts": 19000})
    )
    assert [r.reason for r in decoded.rejected] == [
        "does not fit the schema: column 'user_id' is declared string but the record has 7 (an integer)",
        "does not fit the schema: column 'ts' is declared date32 but the record has \"2024-01-01T00:00:00.001Z\" (text)",
        "does not fit the schema: column 'amount' is declared decimal(10,2) but the record has \"abc\" (text)",
    ]
    inferred = Decoder(RecordSettings())
    inferred.decode(objects({"n": 1}))
    [rejected] = inferred.decode(objects({"n": "many"})).rejected
    assert rejected.reason == (
        "does not fit the schema: column 'n' had int64 in earlier records but the record has \"many\" (text)"
    )


def test_a_declared_type_that_fits_no_record_of_a_batch_is_an_error_not_dead_letters() -> None:
    decoder = Decoder(RecordSettings(schema={"user_id": "string", "n": "int64"}))
    wrong = decoder.decode(objects(*({"user_id": i, "n": i} for i in range(MISFIT_GUARD_MIN))))
    with pytest.raises(TerminalError, match=r"^object 1 \(t\): none of the 20 records .* column 'user_id' is declared string"):
        decoder.check_declared(wrong, "object 1 (t)")
    decoder.check_declared(decoder.decode(objects(*({"user_id": i} for i in range(MISFIT_GUARD_MIN - 1)))), "o")  # too few
    mixed = [{"user_id": i} for i in range(30)] + [{"user_id": "ok"}]
    decoder.check_declared(decoder.decode(objects(*mixed)), "o")  # one record fits: the data is mixed, dead letters
    garbage = records(*[b"{oops"] * 30)
    decoder.check_declared(decoder.decode(garbage), "o")  # not JSON: the producer's fault, dead letters
    free = Decoder(RecordSettings())
    free.decode(objects({"user_id": "u"}))
    free.check_declared(free.decode(objects(*({"user_id": i} for i in range(30)))), "o")  # inferred: no guard


def test_an_inferred_schema_is_kept_across_batches_and_widened_when_it_can_be() -> None:
    decoder = Decoder(RecordSettings())
    first = decoder.decode(objects({"id": 1, "n": 2, "later": None}))
    assert first.batch.schema == pa.schema([("id", pa.int64()), ("n", pa.int64()), ("later", pa.null())])
    second = decoder.decode(objects({"new": "x", "n": 2.5, "id": 2, "later": "now"}, {"id": 3}))
    assert second.rejected == []
    assert second.batch.schema.names == ["id", "n", "later", "new"]
    assert second.batch.schema.field("n").type == pa.float64()
    assert second.batch.to_pylist() == [
        {"id": 2, "n": 2.5, "later": "now", "new": "x"},
        {"id": 3, "n": None, "later": None, "new": None},
    ]
    third = decoder.decode(objects({"id": 4}, {"id": "four"}, {"id": 5, "n": 1}))
    assert [r.index for r in third.rejected] == [1]
    assert third.batch.schema == second.batch.schema
    assert third.batch.column("id").to_pylist() == [4, 5]
    assert third.batch.column("n").to_pylist() == [None, 1.0]


def test_a_decoder_restarts_with_the_schema_it_had_learnt() -> None:
    learnt = Decoder(RecordSettings())
    learnt.decode(objects({"id": 1, "name": "a"}))
    again = Decoder(RecordSettings(), known=learnt.value_schema)
    decoded = again.decode(objects({"name": "b"}))
    assert decoded.batch.to_pylist() == [{"id": None, "name": "b"}]


def test_records_within_one_batch_whose_types_conflict_keep_the_first_type_seen() -> None:
    decoded = Decoder(RecordSettings()).decode(objects({"v": 1}, {"v": 2}, {"v": "x"}, {"v": 3}))
    assert decoded.batch.column("v").to_pylist() == [1, 2, 3]
    assert [r.index for r in decoded.rejected] == [2]


def test_metadata_columns_follow_the_value_columns_with_their_types() -> None:
    messages = [
        Record(
            b'{"id": 1}',
            key_=b"k1",
            topic_="orders",
            partition_=2,
            offset_=41,
            timestamp_ms=1_700_000_000_123,
            headers_=[("trace", b"abc"), ("empty", None)],
        ),
        Record(b'{"id": 2}', key_=b"\xff", topic_="orders", partition_=0, offset_=7),
    ]
    columns = ["_topic", "_partition", "_offset", "_timestamp", "_key", "_headers"]
    decoded = Decoder(RecordSettings(schema={"id": "int64"}, columns=columns)).decode(messages)  # type: ignore[arg-type]
    batch = decoded.batch
    assert batch.schema.names == ["id", *columns]
    assert all(batch.schema.field(name).type == METADATA_TYPES[name] for name in columns)
    first, second = batch.to_pylist()
    assert (first["_topic"], first["_partition"], first["_offset"], first["_key"]) == ("orders", 2, 41, "k1")
    assert first["_timestamp"].isoformat() == "2023-11-14T22:13:20.123000+00:00"
    assert first["_headers"] == [{"key": "trace", "value": b"abc"}, {"key": "empty", "value": None}]
    assert second["_timestamp"] is None and second["_headers"] is None and second["_key"] == "\ufffd"


def test_metadata_columns_belong_to_the_kept_records_only() -> None:
    settings = RecordSettings(schema={"id": "int64"}, columns=["_offset"])
    decoded = Decoder(settings).decode(records(b'{"id": 10}', b"nope", b'{"id": 12}'))
    assert decoded.batch.to_pylist() == [{"id": 10, "_offset": 0}, {"id": 12, "_offset": 2}]


def test_no_messages_give_an_empty_batch_with_the_declared_schema() -> None:
    decoder = Decoder(RecordSettings(schema={"id": "int64"}, columns=["_offset"]))
    batch = decoder.decode([]).batch
    assert batch.num_rows == 0 and batch.schema == decoder.schema
    assert decoder.schema.names == ["id", "_offset"]


def test_only_bad_records_give_an_empty_batch() -> None:
    decoded = Decoder(RecordSettings(schema={"id": "int64"})).decode(records(b"x", b"y"))
    assert decoded.batch.num_rows == 0 and len(decoded.rejected) == 2


def test_the_dead_letter_topic_defaults_to_the_topic_dot_dead_letter() -> None:
    assert RecordSettings().dead_letter_topic("orders") == "orders.dead-letter"
    assert RecordSettings(dead_letter="bad-orders").dead_letter_topic("orders") == "bad-orders"
    assert RecordSettings(dead_letter=False).dead_letter_topic("orders") is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"schema": {"id": "integr"}}, "schema: column 'id': unknown column type 'integr'"),
        ({"columns": ["_offset", "_offset"]}, "listed twice"),
        ({"columns": ["_size"]}, "_size"),
        ({"dead_letter": ""}, "dead_letter: give a topic name"),
        ({"schema": {"_key": "string"}, "columns": ["_key"]}, "'_key' is also a metadata column"),
        ({"format": "avro"}, "avro"),
    ],
)
def test_bad_settings_are_refused_naming_the_option(raw: dict[str, object], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert(raw, RecordSettings)


def test_the_module_examples_hold() -> None:
    result = doctest.testmod(records_module)
    assert result.attempted > 0 and result.failed == 0


def test_a_frozen_decoder_keeps_its_inferred_schema_as_if_declared() -> None:
    decoder = Decoder(RecordSettings())
    decoder.decode(objects({"id": 1, "empty": None}))
    decoder.freeze()
    assert decoder.schema == pa.schema([("id", pa.int64()), ("empty", pa.string())])
    decoded = decoder.decode(objects({"id": 2, "empty": "x", "new": 1}, {"id": 2.5}))
    assert decoded.batch.to_pylist() == [{"id": 2, "empty": "x"}]
    assert [r.index for r in decoded.rejected] == [1]


def test_pretty_printed_values_in_a_batch_larger_than_a_parse_block_are_decoded() -> None:
    rows = [{"id": i, "text": "x" * 100, "nested": {"a": i}} for i in range(5000)]  # about 1 MB
    decoded = Decoder(RecordSettings()).decode(records(*(json.dumps(row, indent=2).encode() for row in rows)))
    assert decoded.rejected == []
    assert decoded.batch.column("id").to_pylist() == list(range(5000))
