from __future__ import annotations

import datetime as dt
import json
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from sluice.connectors.base import Source, SourceContext
from sluice.connectors.files import CsvSource, JsonLinesSource, JsonSource, ParquetSource, content_digest
from sluice.connectors.registry import open_source
from sluice.errors import ConfigError, TerminalError
from sluice.project.model import SourceSpec


def source(tmp_path: Path, kind: str, **options: Any) -> Source:
    return open_source(SourceSpec(kind, options), SourceContext(tmp_path, {}))


def read(tmp_path: Path, kind: str, **options: Any) -> pa.Table:
    return source(tmp_path, kind, **options).read().read_all()


def test_registry_picks_the_class_for_each_file_kind(tmp_path: Path) -> None:
    kinds = {"csv": CsvSource, "json": JsonSource, "jsonl": JsonLinesSource, "parquet": ParquetSource}
    for kind, expected in kinds.items():
        assert type(source(tmp_path, kind, path=f"x.{kind}")) is expected


def test_registry_suggests_a_kind_for_a_typo(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown source type 'cvs'. Did you mean 'csv'"):
        source(tmp_path, "cvs", path="x.csv")


# --- CSV ---------------------------------------------------------------------------------------------


def test_csv_reads_values_with_inferred_types(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "users.csv").write_text("id,name,score,active\n1,Ada,9.5,true\n2,Linus,,false\n", encoding="utf-8")
    table = read(tmp_path, "csv", path="data/users.csv")
    assert table.schema == pa.schema([("id", pa.int64()), ("name", pa.string()), ("score", pa.float64()), ("active", pa.bool_())])
    assert table.to_pylist() == [
        {"id": 1, "name": "Ada", "score": 9.5, "active": True},
        {"id": 2, "name": "Linus", "score": None, "active": False},
    ]


def test_csv_text_not_valid_in_its_encoding_is_refused_with_the_encoding_to_set(tmp_path: Path) -> None:
    (tmp_path / "cafes.csv").write_bytes("id,name\n1,café\n2,thé\n".encode("latin-1"))
    with pytest.raises(TerminalError) as caught:
        read(tmp_path, "csv", path="cafes.csv")  # pyarrow would read the column as binary: bytes where text was meant
    assert "column 'name' is not valid utf8 text" in str(caught.value) and "encoding: latin1" in str(caught.value)
    assert read(tmp_path, "csv", path="cafes.csv", encoding="latin1").column("name").to_pylist() == ["café", "thé"]
    declared = read(tmp_path, "csv", path="cafes.csv", column_types={"name": "binary"})
    assert declared.column("name").to_pylist() == ["café".encode("latin-1"), "thé".encode("latin-1")]


def test_csv_options_nested_or_beside_path(tmp_path: Path) -> None:
    (tmp_path / "semi.csv").write_text("a;b\n1;x\n", encoding="utf-8")
    (tmp_path / "bare.csv").write_text("1|x\n2|y\n", encoding="utf-8")
    assert read(tmp_path, "csv", path="semi.csv", options={"delimiter": ";"}).to_pylist() == [{"a": 1, "b": "x"}]
    table = read(tmp_path, "csv", path="bare.csv", delimiter="|", header=False)
    assert table.column_names == ["f0", "f1"]
    assert table.num_rows == 2
    named = read(tmp_path, "csv", path="bare.csv", delimiter="|", header=False, column_names=["id", "code"])
    assert named.to_pylist() == [{"id": 1, "code": "x"}, {"id": 2, "code": "y"}]


def test_csv_unknown_nested_option_suggests_the_right_one(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("a\n1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown option 'delimeter'. Did you mean 'delimiter'"):
        read(tmp_path, "csv", path="a.csv", options={"delimeter": ";"})


def test_csv_streams_in_blocks(tmp_path: Path) -> None:
    lines = "".join(f"{i},name-{i}\n" for i in range(20_000))
    (tmp_path / "big.csv").write_text("id,name\n" + lines, encoding="utf-8")
    reader = source(tmp_path, "csv", path="big.csv", block_size=16 * 1024).read()
    batches = list(reader)
    assert len(batches) > 1
    assert sum(batch.num_rows for batch in batches) == 20_000
    assert pa.Table.from_batches(batches).column("id").to_pylist() == list(range(20_000))


def test_csv_type_change_after_the_first_block_says_how_to_fix_it(tmp_path: Path) -> None:
    rows = "".join(f"{i}\n" for i in range(5_000)) + "not-a-number\n"
    (tmp_path / "mixed.csv").write_text("code\n" + rows, encoding="utf-8")
    with pytest.raises(TerminalError, match=r"mixed\.csv.*column_types"):
        read(tmp_path, "csv", path="mixed.csv", block_size=4096)
    fixed = read(tmp_path, "csv", path="mixed.csv", block_size=4096, column_types={"code": "string"})
    assert fixed.schema.field("code").type == pa.string()
    assert fixed.num_rows == 5_001


def test_csv_line_breaks_inside_quoted_fields_load_with_defaults_across_blocks(tmp_path: Path) -> None:
    rows = "".join(f'{i},name-{i},"first line {i}\nsecond line, with a comma"\n' for i in range(200_000))
    path = tmp_path / "notes.csv"
    path.write_text("id,name,note\n" + rows, encoding="utf-8")
    block = 1 << 20
    assert path.stat().st_size > 8 * block
    batches = list(source(tmp_path, "csv", path="notes.csv", block_size=block).read())
    assert len(batches) > 1
    table = pa.Table.from_batches(batches)
    assert table.num_rows == 200_000
    assert table.column("id").to_pylist() == list(range(200_000))
    assert table.column("note")[199_999].as_py() == "first line 199999\nsecond line, with a comma"


def test_csv_line_breaks_with_the_option_off_advise_an_option_sluice_accepts(tmp_path: Path) -> None:
    rows = "".join(f'{i},"a\nb"\n' for i in range(5_000))
    (tmp_path / "notes.csv").write_text("id,note\n" + rows, encoding="utf-8")
    with pytest.raises(TerminalError) as caught:
        read(tmp_path, "csv", path="notes.csv", block_size=4096, newlines_in_values=False)
    message = str(caught.value)
    assert "notes.csv" in message
    assert "set newlines_in_values: true" in message
    assert "please consider" not in message, "pyarrow's own advice is replaced"


def test_csv_quote_never_closed_is_explained(tmp_path: Path) -> None:
    (tmp_path / "open.csv").write_text('id,t\n1,"abc\n' + "2,x\n" * 5_000, encoding="utf-8")
    with pytest.raises(TerminalError, match=r"open\.csv.*never closed.*stray quote character \(\"\)"):
        read(tmp_path, "csv", path="open.csv", block_size=4096)


def test_csv_empty_unquoted_field_is_null_and_quoted_empty_stays_text(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text('id,email,score\n1,,\n2,"",3\n3,a@b.c,4\n4,NA,5\n', encoding="utf-8")
    table = read(tmp_path, "csv", path="users.csv")
    assert table.column("email").to_pylist() == [None, "", "a@b.c", "NA"]
    assert table.column("score").to_pylist() == [None, 3, 4, 5]
    kept = read(tmp_path, "csv", path="users.csv", empty_as_null=False)
    assert kept.column("email").to_pylist() == ["", "", "a@b.c", "NA"]
    assert kept.column("score").to_pylist() == [None, 3, 4, 5]
    custom = read(tmp_path, "csv", path="users.csv", null_values=["NA"])
    assert custom.column("email").to_pylist() == [None, "", "a@b.c", None]
    only_listed = read(tmp_path, "csv", path="users.csv", null_values=["NA"], empty_as_null=False)
    assert only_listed.column("email").to_pylist() == ["", "", "a@b.c", None]


def test_csv_empty_fields_are_null_in_sql_where_is_not_null(tmp_path: Path) -> None:
    """The README's example: ``where email is not null`` drops the rows without an email."""
    (tmp_path / "users.csv").write_text("user_id,email\n1,a@b.c\n2,\n3,\n", encoding="utf-8")
    table = read(tmp_path, "csv", path="users.csv")
    kept = table.filter(pc.is_valid(table.column("email")))
    assert kept.column("user_id").to_pylist() == [1]


def test_missing_file_names_the_configured_and_the_absolute_path(tmp_path: Path) -> None:
    with pytest.raises(TerminalError) as caught:
        read(tmp_path, "csv", path="data/nope.csv")
    message = str(caught.value)
    assert "'data/nope.csv' does not exist" in message
    assert str(tmp_path / "data" / "nope.csv") in message


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    (tmp_path / "abs.csv").write_text("a\n1\n", encoding="utf-8")
    assert read(Path("/nonexistent-root"), "csv", path=str(tmp_path / "abs.csv")).num_rows == 1


def test_fingerprint_follows_the_content_not_the_modification_time(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("a\n1\n", encoding="utf-8")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    first = source(tmp_path, "csv", path="f.csv").input_fingerprint()
    assert first is not None
    assert source(tmp_path, "csv", path="f.csv").input_fingerprint() == first
    os.utime(path, ns=(2_000_000_000, 2_000_000_000))
    assert source(tmp_path, "csv", path="f.csv").input_fingerprint() == first, "touched, same bytes: unchanged"
    path.write_text("a\n2\n", encoding="utf-8")  # what cp -p, rsync -t or tar x leave: same size, same mtime
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    rewritten = source(tmp_path, "csv", path="f.csv").input_fingerprint()
    assert rewritten not in (None, first)
    path.write_text("a\n1\n", encoding="utf-8")
    assert source(tmp_path, "csv", path="f.csv").input_fingerprint() == first, "the old bytes again"


def test_fingerprint_follows_the_path_and_is_none_when_unreadable(tmp_path: Path) -> None:
    (tmp_path / "one.csv").write_text("a\n1\n", encoding="utf-8")
    (tmp_path / "two.csv").write_text("a\n1\n", encoding="utf-8")
    (tmp_path / "folder.csv").mkdir()
    one = source(tmp_path, "csv", path="one.csv").input_fingerprint()
    assert one is not None
    assert source(tmp_path, "csv", path="two.csv").input_fingerprint() not in (None, one)
    assert source(tmp_path, "csv", path="missing.csv").input_fingerprint() is None
    assert source(tmp_path, "csv", path="folder.csv").input_fingerprint() is None
    with pytest.raises(ConfigError, match="missing required option 'path'"):
        source(tmp_path, "csv")  # typed options: refused before anything reads


def test_content_digest_hashes_every_byte_of_a_file_larger_than_one_block(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    data = bytearray(os.urandom(3 << 20))
    path.write_bytes(data)
    digest = content_digest(path)
    assert len(digest) == 32
    assert content_digest(path) == digest
    data[-1] ^= 1  # the last byte of the last block
    path.write_bytes(data)
    assert content_digest(path) != digest
    with pytest.raises(OSError):
        content_digest(tmp_path / "missing.bin")


# --- JSON and JSON Lines -----------------------------------------------------------------------------


def test_json_array_unions_keys_across_rows(tmp_path: Path) -> None:
    rows = [{"id": 1, "name": "a"}, {"id": 2, "score": 2.5}, {"id": 3, "tags": {"k": 1}}]
    (tmp_path / "rows.json").write_text(json.dumps(rows), encoding="utf-8")
    table = read(tmp_path, "json", path="rows.json")
    assert table.column_names == ["id", "name", "score", "tags"]
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("tags").type == pa.struct([("k", pa.int64())])
    assert table.column("score").to_pylist() == [None, 2.5, None]


def test_json_array_with_bom_and_column_types(tmp_path: Path) -> None:
    (tmp_path / "bom.json").write_bytes(b'\xef\xbb\xbf [{"id": 1, "day": "2024-01-02"}]')
    table = read(tmp_path, "json", path="bom.json", column_types={"day": "date32", "id": "int32"})
    assert table.schema == pa.schema([("id", pa.int32()), ("day", pa.date32())])


def test_json_that_is_line_delimited_is_read_as_json_lines(tmp_path: Path) -> None:
    (tmp_path / "lines.json").write_text('{"id": 1}\n{"id": 2}\n', encoding="utf-8")
    assert read(tmp_path, "json", path="lines.json").column("id").to_pylist() == [1, 2]


def test_json_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('[{"id": 1},', encoding="utf-8")
    (tmp_path / "scalars.json").write_text("[1, 2]", encoding="utf-8")
    (tmp_path / "mixed.json").write_text('[{"id": 1}, {"id": "x"}]', encoding="utf-8")
    with pytest.raises(TerminalError, match=r"broken\.json: not valid JSON"):
        read(tmp_path, "json", path="broken.json")
    with pytest.raises(TerminalError, match=r"expected an array of objects"):
        read(tmp_path, "json", path="scalars.json")
    with pytest.raises(
        TerminalError, match=r"mixed\.json: line 1, column 'id': \"x\" is a JSON string.*column_types: \{id: string\}"
    ):
        read(tmp_path, "json", path="mixed.json")


def test_empty_json_array_and_empty_json_lines(tmp_path: Path) -> None:
    (tmp_path / "empty.json").write_text("[]", encoding="utf-8")
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    assert read(tmp_path, "json", path="empty.json").num_rows == 0
    assert read(tmp_path, "jsonl", path="empty.jsonl").num_rows == 0


def test_jsonl_streams_with_types(tmp_path: Path) -> None:
    lines = "".join(json.dumps({"id": i, "name": f"n{i}", "ok": i % 2 == 0}) + "\n" for i in range(3_000))
    (tmp_path / "events.jsonl").write_text(lines, encoding="utf-8")
    batches = list(source(tmp_path, "jsonl", path="events.jsonl", block_size=8 * 1024).read())
    assert len(batches) > 1
    table = pa.Table.from_batches(batches)
    assert table.schema == pa.schema([("id", pa.int64()), ("name", pa.string()), ("ok", pa.bool_())])
    assert table.column("id").to_pylist() == list(range(3_000))


def test_jsonl_type_change_is_a_terminal_error_fixed_by_column_types(tmp_path: Path) -> None:
    (tmp_path / "drift.jsonl").write_text('{"v": 1}\n{"v": "x"}\n', encoding="utf-8")
    with pytest.raises(TerminalError, match=r"drift\.jsonl.*column_types"):
        read(tmp_path, "jsonl", path="drift.jsonl")


LATE = [("1.5", "number", "double"), ("true", "boolean", "string"), ('"n/a"', "string", "string")]


def late_change(path: Path, last: str, rows: int = 300_000) -> None:
    path.write_text(
        "".join(f'{{"id": {i}, "v": 7}}\n' for i in range(rows)) + f'{{"id": {rows}, "v": {last}}}\n', encoding="utf-8"
    )


@pytest.mark.parametrize(("last", "kind", "remedy"), LATE)
def test_jsonl_late_type_change_names_the_file_line_and_the_column(tmp_path: Path, last: str, kind: str, remedy: str) -> None:
    late_change(tmp_path / "late.jsonl", last)
    with pytest.raises(TerminalError) as caught:
        read(tmp_path, "jsonl", path="late.jsonl")
    message = str(caught.value)
    assert f"late.jsonl: line 300001, column 'v': {last} is a JSON {kind}" in message
    assert f"column_types: {{v: {remedy}}}" in message
    assert "row" not in message


@pytest.mark.parametrize(("last", "text"), [("1.5", "1.5"), ("true", "true"), ('"n/a"', "n/a"), ('{"a": 1}', '{"a":1}')])
def test_jsonl_declared_string_keeps_the_json_text_of_every_value(tmp_path: Path, last: str, text: str) -> None:
    late_change(tmp_path / "late.jsonl", last)
    table = read(tmp_path, "jsonl", path="late.jsonl", column_types={"v": "string"})
    assert table.schema.field("v").type == pa.string()
    assert table.num_rows == 300_001
    assert table.column("v")[0].as_py() == "7"
    assert table.column("v")[-1].as_py() == text


def test_jsonl_declared_string_with_kinds_mixed_in_one_block(tmp_path: Path) -> None:
    (tmp_path / "mixed.jsonl").write_text('{"v": 7}\n{"v": "x"}\n{"v": false}\n{"v": null}\n{"w": 1}\n', encoding="utf-8")
    table = read(tmp_path, "jsonl", path="mixed.jsonl", column_types={"v": "string"})
    assert table.column("v").to_pylist() == ["7", "x", "false", None, None]
    assert table.column("w").to_pylist() == [None, None, None, None, 1]


def test_jsonl_declared_double_takes_ints_and_floats(tmp_path: Path) -> None:
    late_change(tmp_path / "late.jsonl", "1.5")
    table = read(tmp_path, "jsonl", path="late.jsonl", column_types={"v": "double"})
    assert table.schema.field("v").type == pa.float64()
    assert table.column("v")[0].as_py() == 7.0
    assert table.column("v")[-1].as_py() == 1.5


@pytest.mark.parametrize("kind", ["jsonl", "json"])
def test_declared_dates_and_times_are_read_from_iso_text(tmp_path: Path, kind: str) -> None:
    """pyarrow's JSON reader takes dates and times only as numbers: a jsonl source reads them as text and parses them,
    across blocks too, as a json array does."""
    rows = [{"d": f"2026-01-{i % 28 + 1:02d}", "d64": "2026-01-05", "t": "12:30:00.25", "n": i} for i in range(2_000)]
    rows[1]["d"] = None
    if kind == "json":
        (tmp_path / "j.json").write_text(json.dumps(rows), encoding="utf-8")
    else:
        (tmp_path / "j.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    declared = {"d": "date32", "d64": "date64", "t": "time64[us]"} if kind == "jsonl" else {"d": "date32", "d64": "date64"}
    batches = list(source(tmp_path, kind, path=f"j.{kind}", column_types=declared, block_size=8 * 1024).read())
    table = pa.Table.from_batches(batches)
    assert table.schema.field("d").type == pa.date32() and table.schema.field("d64").type == pa.date64()
    assert table.column("d").to_pylist()[:3] == [dt.date(2026, 1, 1), None, dt.date(2026, 1, 3)]
    assert table.column("d").to_pylist()[-1] == dt.date(2026, 1, 1999 % 28 + 1)
    assert table.column("d64").to_pylist()[-1] == dt.date(2026, 1, 5)
    if kind == "jsonl":
        assert len(batches) > 1
        assert table.schema.field("t").type == pa.time64("us")
        assert table.column("t").to_pylist()[-1] == dt.time(12, 30, 0, 250_000)


def test_jsonl_a_block_pyarrow_refuses_names_its_own_lines(tmp_path: Path) -> None:
    (tmp_path / "j.jsonl").write_text('{"a": 1}\n{"a": 2}\n{"a": 1099511627776}\n', encoding="utf-8")
    with pytest.raises(TerminalError, match=r"j.jsonl: cannot read lines 1-3: .*int32"):  # three lines: not 1-4
        read(tmp_path, "jsonl", path="j.jsonl", column_types={"a": "int32"})


def test_jsonl_a_declared_date_that_does_not_parse_names_the_file_lines_and_column(tmp_path: Path) -> None:
    (tmp_path / "j.jsonl").write_text('{"d": "2026-01-05"}\n\n{"d": null}\n{"d": "05/01/2026"}\n', encoding="utf-8")
    with pytest.raises(TerminalError) as caught:
        read(tmp_path, "jsonl", path="j.jsonl", column_types={"d": "date32"})
    message = str(caught.value)
    assert f"jsonl source {tmp_path / 'j.jsonl'}: cannot read lines 1-4: line 4, column 'd': " in message, message
    assert '"05/01/2026" is not a date32[day] value' in message and "column_types: {d: string}" in message
    assert "\n" not in message
    (tmp_path / "j.jsonl").write_text('{"d": 20260105}\n', encoding="utf-8")  # dates are text, as in a json array
    with pytest.raises(TerminalError, match=r"line 1, column 'd': 20260105 is a JSON number"):
        read(tmp_path, "jsonl", path="j.jsonl", column_types={"d": "date32"})


UTC = dt.UTC


def stamps(path: Path, values: list[str | None], rows: int = 1) -> None:
    """``values`` as column ``ts`` of a JSON Lines file, each repeated ``rows`` times (enough for several blocks)."""
    path.write_text("".join(json.dumps({"id": i, "ts": value}) + "\n" for i, value in enumerate(values * rows)), encoding="utf-8")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (  # offsets that differ, and Z: each value converted to UTC
            ["2026-01-01T10:00:00+01:00", "2026-01-01T10:00:00-05:00", "2026-01-01T10:00:00Z", None, "2026-01-01T10:00:00+0530"],
            [
                dt.datetime(2026, 1, 1, 9),
                dt.datetime(2026, 1, 1, 15),
                dt.datetime(2026, 1, 1, 10),
                None,
                dt.datetime(2026, 1, 1, 4, 30),
            ],
        ),
        (  # one offset for all
            ["2026-01-01T10:00:00+01:00", "2026-01-01T11:00:00+01:00"],
            [dt.datetime(2026, 1, 1, 9), dt.datetime(2026, 1, 1, 10)],
        ),
    ],
)
def test_jsonl_timestamps_with_utc_offsets_are_instants_in_utc(
    tmp_path: Path, values: list[str | None], expected: list[Any]
) -> None:
    """pyarrow's reader applied the offsets but kept the column without a time zone: values with two meanings once a
    value without an offset came along. Across blocks too, with the type fixed by the first."""
    stamps(tmp_path / "t.jsonl", values)
    table = read(tmp_path, "jsonl", path="t.jsonl")
    assert table.schema == pa.schema([("id", pa.int64()), ("ts", pa.timestamp("s", tz="UTC"))])  # in the file's order
    assert table.column("ts").to_pylist() == [None if when is None else when.replace(tzinfo=UTC) for when in expected]
    stamps(tmp_path / "t.jsonl", values, rows=400)
    batches = list(source(tmp_path, "jsonl", path="t.jsonl", block_size=4096).read())
    assert len(batches) > 1 and all(batch.schema.field("ts").type == pa.timestamp("s", tz="UTC") for batch in batches)
    assert pa.Table.from_batches(batches).column("ts").to_pylist()[-len(values) :] == table.column("ts").to_pylist()


def test_jsonl_timestamps_without_offsets_stay_wall_clock_times(tmp_path: Path) -> None:
    stamps(tmp_path / "t.jsonl", ["2026-01-01T10:00:00", "2026-01-01 11:00:00", None])
    table = read(tmp_path, "jsonl", path="t.jsonl")
    assert table.schema.field("ts").type == pa.timestamp("s")
    assert table.column("ts").to_pylist() == [dt.datetime(2026, 1, 1, 10), dt.datetime(2026, 1, 1, 11), None]


@pytest.mark.parametrize("rows", [1, 400])
def test_jsonl_timestamps_with_and_without_offsets_in_one_column_are_refused(tmp_path: Path, rows: int) -> None:
    """In one block, or a later block that does not fit the type its first block gave the column: one line naming the
    file, the line and the column, and the two ways out."""
    stamps(tmp_path / "t.jsonl", ["2026-01-01T10:00:00+01:00"] * rows + ["2026-01-01T10:00:00"])
    with pytest.raises(TerminalError) as caught:
        read(tmp_path, "jsonl", path="t.jsonl", block_size=4096)
    message = str(caught.value)
    assert f"jsonl source {tmp_path / 't.jsonl'}: cannot read lines " in message and "\n" not in message
    assert f"line {rows + 1}, column 'ts': \"2026-01-01T10:00:00\" has no UTC offset" in message, message
    assert 'column_types: {ts: "timestamp[s, tz=UTC]"}' in message
    stamps(tmp_path / "t.jsonl", ["2026-01-01T10:00:00"] * rows + ["2026-01-01T10:00:00Z"])
    with pytest.raises(TerminalError, match=rf"line {rows + 1}, column 'ts': \"2026-01-01T10:00:00Z\" has a UTC offset"):
        read(tmp_path, "jsonl", path="t.jsonl", block_size=4096)


def test_jsonl_declared_timestamps_keep_to_their_time_zone(tmp_path: Path) -> None:
    """A declared zone converts values with an offset and reads those without one as times of that zone; a declared
    type without a zone refuses an offset rather than drop it or apply it silently."""
    stamps(tmp_path / "t.jsonl", ["2026-01-01T10:00:00+01:00", "2026-01-01T10:00:00", None])
    utc = read(tmp_path, "jsonl", path="t.jsonl", column_types={"ts": "timestamp[us, tz=UTC]"})
    assert utc.column("ts").to_pylist() == [dt.datetime(2026, 1, 1, 9, tzinfo=UTC), dt.datetime(2026, 1, 1, 10, tzinfo=UTC), None]
    paris = read(tmp_path, "jsonl", path="t.jsonl", column_types={"ts": "timestamp[us, tz=Europe/Paris]"})
    assert paris.schema.field("ts").type == pa.timestamp("us", tz="Europe/Paris")
    assert pc.cast(paris.column("ts"), pa.timestamp("us", "UTC")).to_pylist()[:2] == [dt.datetime(2026, 1, 1, 9, tzinfo=UTC)] * 2
    with pytest.raises(TerminalError) as caught:
        read(tmp_path, "jsonl", path="t.jsonl", column_types={"ts": "timestamp[us]"})
    message = str(caught.value)
    assert "line 1, column 'ts': \"2026-01-01T10:00:00+01:00\" has a UTC offset" in message, message
    assert 'column_types: {ts: "timestamp[us, tz=UTC]"}' in message and "\n" not in message
    stamps(tmp_path / "t.jsonl", ["2026-03-29T01:30:00", "2026-03-29T02:30:00"])  # Paris skips 02:00-03:00 that day
    with pytest.raises(TerminalError, match=r"line 2, column 'ts': \"2026-03-29T02:30:00\" is not one time in Europe/Paris"):
        read(tmp_path, "jsonl", path="t.jsonl", column_types={"ts": "timestamp[us, tz=Europe/Paris]"})
    stamps(tmp_path / "t.jsonl", ["2026-01-01T10:00:00", "2026-01-01 11:00:00.5"])
    naive = read(tmp_path, "jsonl", path="t.jsonl", column_types={"ts": "timestamp[us]"})
    assert naive.column("ts").to_pylist() == [dt.datetime(2026, 1, 1, 10), dt.datetime(2026, 1, 1, 11, 0, 0, 500_000)]


def test_jsonl_bad_line_and_new_key_after_the_first_block_name_the_line(tmp_path: Path) -> None:
    rows = "".join(f'{{"id": {i}}}\n' for i in range(5_000))
    (tmp_path / "broken.jsonl").write_text(rows + '{"id": 5000\n', encoding="utf-8")
    (tmp_path / "newkey.jsonl").write_text(rows + '{"id": 5000, "extra": 1}\n', encoding="utf-8")
    with pytest.raises(TerminalError, match=r"broken\.jsonl: line 5001 is not valid JSON"):
        read(tmp_path, "jsonl", path="broken.jsonl", block_size=4096)
    with pytest.raises(TerminalError, match=r"newkey\.jsonl: line 5001 has a key 'extra'.*column_types: \{extra: string\}"):
        read(tmp_path, "jsonl", path="newkey.jsonl", block_size=4096)
    table = read(tmp_path, "jsonl", path="newkey.jsonl", block_size=4096, column_types={"extra": "string"})
    assert table.column("extra").to_pylist()[-2:] == [None, "1"]


@pytest.mark.parametrize(("last", "kind", "remedy"), [("true", "boolean", "string"), ('"n/a"', "string", "string")])
def test_json_array_late_type_change_names_the_line_and_the_column(tmp_path: Path, last: str, kind: str, remedy: str) -> None:
    items = ",\n".join(f'{{"id": {i}, "v": 7}}' for i in range(1_000))
    (tmp_path / "late.json").write_text(f'[\n{items},\n{{"id": 1000, "v": {last}}}\n]\n', encoding="utf-8")
    with pytest.raises(TerminalError) as caught:
        read(tmp_path, "json", path="late.json")
    assert f"late.json: line 1002, column 'v': {last} is a JSON {kind}" in str(caught.value)
    assert f"column_types: {{v: {remedy}}}" in str(caught.value)


@pytest.mark.parametrize(("last", "text"), [("1.5", "1.5"), ("true", "true"), ('"n/a"', "n/a")])
def test_json_array_declared_string_and_double(tmp_path: Path, last: str, text: str) -> None:
    (tmp_path / "a.json").write_text(f'[{{"v": 7}}, {{"v": {last}}}]', encoding="utf-8")
    assert read(tmp_path, "json", path="a.json", column_types={"v": "string"}).column("v").to_pylist() == ["7", text]
    (tmp_path / "n.json").write_text('[{"v": 7}, {"v": 1.5}]', encoding="utf-8")
    assert read(tmp_path, "json", path="n.json", column_types={"v": "double"}).column("v").to_pylist() == [7.0, 1.5]


# --- Parquet -----------------------------------------------------------------------------------------


def test_parquet_streams_row_groups_with_its_own_types(tmp_path: Path) -> None:
    table = pa.table({"id": pa.array(range(1000), pa.int32()), "price": pa.array([Decimal("1.50")] * 1000, pa.decimal128(6, 2))})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=300)
    reader = source(tmp_path, "parquet", path="t.parquet", batch_size=250).read()
    assert reader.schema == table.schema
    batches = list(reader)
    assert max(batch.num_rows for batch in batches) <= 250
    assert pa.Table.from_batches(batches).equals(table)


def test_parquet_columns_option(tmp_path: Path) -> None:
    pq.write_table(pa.table({"a": [1], "b": ["x"], "c": [True]}), tmp_path / "t.parquet")
    assert read(tmp_path, "parquet", path="t.parquet", columns=["c", "a"]).column_names == ["c", "a"]
    with pytest.raises(TerminalError, match=r"no column 'bb'.*Did you mean 'b'"):
        read(tmp_path, "parquet", path="t.parquet", columns=["bb"])


def test_not_a_parquet_file(tmp_path: Path) -> None:
    (tmp_path / "fake.parquet").write_text("hello", encoding="utf-8")
    with pytest.raises(TerminalError, match=r"fake\.parquet: not a readable Parquet file"):
        read(tmp_path, "parquet", path="fake.parquet")


def test_a_folder_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "dir.parquet").mkdir()
    with pytest.raises(TerminalError, match=r"is a folder, not a file"):
        read(tmp_path, "parquet", path="dir.parquet")


def test_a_single_object_is_one_row_and_broken_json_is_explained(tmp_path: Path) -> None:
    (tmp_path / "one.json").write_text('{\n  "id": 1\n}\n', encoding="utf-8")
    (tmp_path / "cut.json").write_text('{"id": 1', encoding="utf-8")
    assert read(tmp_path, "json", path="one.json").to_pylist() == [{"id": 1}]
    with pytest.raises(
        TerminalError, match=r"cut\.json: line 1 is not valid JSON.*an array of objects .* or one object per line"
    ):
        read(tmp_path, "json", path="cut.json")


@pytest.mark.parametrize(
    ("values", "expected_type", "expected"),
    [
        (["9223372036854775807", "9223372036854775808"], pa.uint64(), [2**63 - 1, 2**63]),
        (["18446744073709551615", "0"], pa.uint64(), [2**64 - 1, 0]),
        (["-9223372036854775809", "5"], pa.decimal128(38, 0), [Decimal(-(2**63) - 1), Decimal(5)]),
        (["1" * 40, "-2"], pa.string(), ["1" * 40, "-2"]),
        (["9223372036854775807", "-9223372036854775808"], pa.int64(), [2**63 - 1, -(2**63)]),
        (["1.5", "2"], pa.float64(), [1.5, 2.0]),
    ],
)
def test_csv_integers_wider_than_int64_are_never_rounded(
    tmp_path: Path, values: list[str], expected_type: pa.DataType, expected: list[object]
) -> None:
    (tmp_path / "wide.csv").write_text("id,n\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values)), encoding="utf-8")
    table = read(tmp_path, "csv", path="wide.csv")
    assert table.schema.field("n").type == expected_type
    assert table.column("n").to_pylist() == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"encoding": "klingon"}, "encoding: unknown text encoding 'klingon'"),
        ({"column_types": {"a": "foo"}}, "column_types: column 'a': unknown column type 'foo'"),
    ],
)
def test_csv_encodings_and_column_types_are_checked_before_anything_reads(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        source(tmp_path, "csv", path="a.csv", **options)


def test_csv_value_errors_name_the_column_and_the_fix(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i}\n" for i in range(3000)) + "3000,abc\n"
    (tmp_path / "late.csv").write_text("id,v\n" + rows, encoding="utf-8")
    with pytest.raises(TerminalError) as caught:
        read(tmp_path, "csv", path="late.csv", block_size=1024)
    message = str(caught.value)
    assert "In column 'v': CSV conversion error to int64: invalid value 'abc'" in message
    assert message.endswith("set this one: column_types: {v: string}")
