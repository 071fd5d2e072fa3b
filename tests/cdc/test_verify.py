"""sluice sync verify's core against real MariaDB and PostgreSQL: equal tables of every common type, then one
changed value, a missing row, an extra row, and columns the sync drops or masks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from servers_fixtures import mysql_connect, with_database
from sluice.cdc.base import TableRef
from sluice.cdc.events import Column, TableSchema
from sluice.cdc.verify import VerifyError, verify_table

pytestmark = [pytest.mark.postgres, pytest.mark.mysql]

COLUMNS = [
    Column("id", "int64", nullable=False),
    Column("small", "int16"),
    Column("big_unsigned", "uint64"),
    Column("flag", "bool"),
    Column("price", "decimal(12,2)"),
    Column("ratio", "float64"),
    Column("name", "string"),
    Column("grade", "enum", labels=["junior", "senior"]),
    Column("hired", "date"),
    Column("starts", "time(6)"),
    Column("updated", "datetime(6)"),
    Column("seen", "timestamp(6)"),
    Column("blob", "bytes"),
    Column("doc", "json"),
    Column("ssn", "string"),
    Column("email", "string"),
]
MYSQL_DDL = """CREATE TABLE {t} (id BIGINT PRIMARY KEY, small SMALLINT, big_unsigned BIGINT UNSIGNED, flag TINYINT(1),
 price DECIMAL(12,2), ratio DOUBLE, name VARCHAR(64), grade ENUM('junior','senior'), hired DATE, starts TIME(6),
 updated DATETIME(6), seen TIMESTAMP(6) NULL, blob_ LONGBLOB, doc JSON, ssn VARCHAR(20), email VARCHAR(80))
 CHARACTER SET utf8mb4""".replace("blob_", "`blob`")
PG_DDL = """CREATE TABLE {t} (id BIGINT PRIMARY KEY, small SMALLINT, big_unsigned NUMERIC(20,0), flag BOOLEAN,
 price NUMERIC(12,2), ratio DOUBLE PRECISION, name VARCHAR(64), grade TEXT, hired DATE, starts TIME(6),
 updated TIMESTAMP(6), seen TIMESTAMPTZ(6), "blob" BYTEA, doc JSONB, ssn VARCHAR(20), email VARCHAR(80))"""
INSERT = "INSERT INTO {t} VALUES ({marks})"
ROWS = 2_500  # more than LEAF_ROWS: differing chunks are split before their keys are read


def row(i: int) -> list[Any]:
    return [
        i,
        (i % 600) - 300,
        18446744073709551615 - i if i % 7 == 0 else i * 1000,
        i % 2 == 0,
        f"{i * 3}.{i % 100:02d}" if i % 5 else f"{i}.50",
        i / 7 if i % 11 else None,
        f"name {i} é 🙂" if i % 13 else None,
        "senior" if i % 3 == 0 else "junior",
        f"20{10 + i % 20:02d}-0{1 + i % 9}-1{i % 10}",
        f"0{i % 10}:3{i % 10}:00.{i % 1000:06d}",
        f"2024-0{1 + i % 9}-1{i % 10} 12:34:56.{i:06d}",
        f"2023-03-26 0{i % 4}:30:00.{(i * 7) % 1000000:06d}",
        bytes([i % 256, (i * 3) % 256, 0]),
        f'{{"b": [1, 2], "a": {{"n": {i}}}}}',
        f"ssn{i}",
        f"user{i}@example.org",
    ]


def ops_name() -> str:
    return f"ops_verify_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def mysql_ns(mysql_url: str) -> Iterator[tuple[str, str]]:
    name = ops_name()
    conn = mysql_connect(mysql_url)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    yield with_database(mysql_url, name), name
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


@pytest.fixture
def pg_ns(pg_url: str) -> Iterator[tuple[str, str]]:
    import psycopg

    name = ops_name()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    yield pg_url, name
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def fill_mysql(url: str, table: str, rows: list[list[Any]]) -> None:
    conn = mysql_connect(url)
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute(MYSQL_DDL.format(t=table))
        cur.executemany(INSERT.format(t=table, marks=", ".join(["%s"] * len(COLUMNS))), rows)
    conn.close()


def fill_pg(url: str, schema: str, table: str, rows: list[list[Any]]) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute(PG_DDL.format(t=f'"{schema}"."{table}"'))
        with conn.cursor() as cur:
            cur.executemany(INSERT.format(t=f'"{schema}"."{table}"', marks=", ".join(["%s"] * len(COLUMNS))), rows)


def run_sql(url: str, statement: str) -> None:
    if url.startswith("mysql"):
        conn = mysql_connect(url)
        with conn.cursor() as cur:
            cur.execute(statement)
        conn.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(statement)


def ref(namespace: str, target_namespace: str, drop: tuple[str, ...] = (), mask: tuple[str, ...] = ()) -> TableRef:
    schema = TableSchema(namespace, "employes", COLUMNS, ["id"])
    return TableRef(schema, target_namespace, "employes", drop=drop, mask=mask)


@pytest.fixture
def pair(mysql_ns: tuple[str, str], pg_ns: tuple[str, str]) -> tuple[str, str, str, str]:
    """The same rows in MariaDB ``<db>.employes`` and PostgreSQL ``<schema>.employes``: (my url, db, pg url, schema)."""
    rows = [row(i) for i in range(1, ROWS + 1)]
    fill_mysql(mysql_ns[0], "employes", rows)
    fill_pg(pg_ns[0], pg_ns[1], "employes", rows)
    return mysql_ns[0], mysql_ns[1], pg_ns[0], pg_ns[1]


def test_equal_tables_of_every_common_type_are_equal_both_ways(pair: tuple[str, str, str, str]) -> None:
    my_url, db, pg_url, schema = pair
    forward = verify_table(my_url, pg_url, ref(db, schema), chunk_rows=700)
    assert forward.equal, forward
    assert (forward.source_rows, forward.target_rows, forward.chunks_compared) == (ROWS, ROWS, 4)
    assert forward.differences == [] and forward.missing_columns == []
    backward = verify_table(pg_url, my_url, ref(schema, db))
    assert backward.equal and backward.source_rows == ROWS and backward.chunks_compared == 1


def test_same_engine_tables_are_equal(pair: tuple[str, str, str, str], mysql_ns: tuple[str, str]) -> None:
    my_url, db, pg_url, schema = pair
    assert verify_table(pg_url, pg_url, ref(schema, schema), chunk_rows=1000).equal
    assert verify_table(my_url, my_url, ref(db, db), chunk_rows=1000).equal


def test_changed_missing_and_extra_rows_are_listed_by_key(pair: tuple[str, str, str, str]) -> None:
    my_url, db, pg_url, schema = pair
    target = f'"{schema}".employes'
    run_sql(pg_url, f"UPDATE {target} SET price = price + 0.01 WHERE id = 1234")
    run_sql(pg_url, f"UPDATE {target} SET seen = seen + interval '1 microsecond' WHERE id = 17")
    run_sql(pg_url, f"DELETE FROM {target} WHERE id = 2000")
    run_sql(pg_url, f"INSERT INTO {target} (id, name) VALUES (999999, 'extra'), (0, 'first')")
    verdict = verify_table(my_url, pg_url, ref(db, schema), chunk_rows=2_400)
    assert not verdict.equal
    assert (verdict.source_rows, verdict.target_rows) == (ROWS, ROWS + 1)
    found = {(tuple(d.key), d.kind) for d in verdict.differences}
    assert found == {
        (("0",), "extra"),
        (("17",), "changed"),
        (("1234",), "changed"),
        (("2000",), "missing"),
        (("999999",), "extra"),
    }
    assert not verdict.more_differences


def test_the_key_list_is_bounded(pair: tuple[str, str, str, str]) -> None:
    my_url, db, pg_url, schema = pair
    run_sql(pg_url, f"UPDATE \"{schema}\".employes SET name = 'changed' WHERE id <= 50")
    verdict = verify_table(my_url, pg_url, ref(db, schema), max_keys=10)
    assert len(verdict.differences) == 10 and verdict.more_differences
    assert verdict.differing_keys == [[str(i)] for i in range(1, 11)]


def test_dropped_and_masked_columns_are_not_compared(pair: tuple[str, str, str, str]) -> None:
    my_url, db, pg_url, schema = pair
    run_sql(pg_url, f'UPDATE "{schema}".employes SET email = md5(email)')
    run_sql(pg_url, f'ALTER TABLE "{schema}".employes DROP COLUMN ssn')
    unequal = verify_table(my_url, pg_url, ref(db, schema))
    assert not unequal.equal and unequal.missing_columns == ["ssn"] and len(unequal.differences) == 100
    verdict = verify_table(my_url, pg_url, ref(db, schema, drop=("ssn",), mask=("email",)))
    assert verdict.equal, verdict
    assert "ssn" not in verdict.columns and "email" not in verdict.columns and "price" in verdict.columns


def test_a_missing_target_table_is_named(pair: tuple[str, str, str, str]) -> None:
    my_url, db, pg_url, schema = pair
    table = TableRef(TableSchema(db, "employes", COLUMNS, ["id"]), schema, "staff")
    with pytest.raises(VerifyError, match=f"{schema}.staff does not exist"):
        verify_table(my_url, pg_url, table)


def test_the_cli_report_lists_each_table_plain_when_piped_and_as_json(pair: tuple[str, str, str, str]) -> None:
    import json

    from sluice.cli.sync_verify import verify_and_report

    my_url, db, pg_url, schema = pair
    run_sql(pg_url, f'DELETE FROM "{schema}".employes WHERE id = 7')
    missing = TableRef(TableSchema(db, "nope", COLUMNS, ["id"]), schema, "nope")
    lines: list[str] = []
    equal = verify_and_report("employees", ("hr", my_url), ("warehouse", pg_url), [ref(db, schema), missing], echo=lines.append)
    assert not equal
    text = "\n".join(lines)
    assert "sync employees: hr -> warehouse: DIFFERENT" in text
    assert f"{db}.employes" in text and "missing key 7" in text and "DIFFERENT" in text
    assert f"{db}.nope" in text and "ERROR" in text and "does not exist" in text
    assert "\x1b[" not in text  # piped: no terminal escapes
    lines.clear()
    assert not verify_and_report(
        "employees", ("hr", my_url), ("warehouse", pg_url), [ref(db, schema)], json_output=True, echo=lines.append
    )
    document = json.loads(lines[0])
    assert document["equal"] is False and document["tables"][0]["source_rows"] == ROWS
    assert document["tables"][0]["differences"] == [{"key": ["7"], "kind": "missing"}]


EDGE_COLUMNS = [
    Column("id", "int64", nullable=False),
    Column("bits", "bit(64)"),
    Column("yr", "year"),
    Column("span", "time(6)"),
    Column("ratio", "float64"),
    Column("small", "float32"),
]
EDGE_ROWS: list[list[Any]] = [
    [1, 2**64 - 1, 0, "-838:59:59.999", -1e308, -3.4e38],
    [2, 2**63, 1901, "838:59:59.999999", 1.7976931348623157e308, 1e-30],
    [3, 0, 2155, "-00:00:01.5", 0.0, 0.0],
    [4, 1, 2024, "05:06:07", 1 / 3, 0.1],
    [5, None, None, None, None, None],
    [6, 2**63 - 1, 1999, "-12:00:00.000001", -5e-300, -1.5],
]


def _edge_tables(mysql_ns: tuple[str, str], pg_ns: tuple[str, str]) -> TableRef:
    """The edge values in MariaDB (the source types) and in PostgreSQL (the types pg_apply gives them)."""
    import psycopg

    from sluice.cdc.apply_common import pg_type

    (my_url, db), (pg_url, schema) = mysql_ns, pg_ns
    conn = mysql_connect(my_url)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE edges (id BIGINT PRIMARY KEY, bits BIT(64), yr YEAR, span TIME(6), ratio DOUBLE, small FLOAT)")
        for values in EDGE_ROWS:
            cur.execute("INSERT INTO edges VALUES (%s, %s, %s, %s, %s, %s)", values)
    conn.close()
    types = ", ".join(f'"{c.name}" {pg_type(c)}' for c in EDGE_COLUMNS)
    assert "bit(64)" in types and "interval" in types and "smallint" in types
    with psycopg.connect(pg_url, autocommit=True) as pg:
        pg.execute(f'CREATE TABLE "{schema}".edges ({types}, PRIMARY KEY (id))')
        for values in EDGE_ROWS:
            bits = None if values[1] is None else format(values[1], "064b")
            pg.execute(
                f'INSERT INTO "{schema}".edges VALUES (%s, %s::bit(64), %s, %s::interval, %s, %s)',
                [values[0], bits, *values[2:]],
            )
    return TableRef(TableSchema(db, "edges", EDGE_COLUMNS, ["id"]), schema, "edges")


def test_edge_values_are_equal_across_engines(mysql_ns: tuple[str, str], pg_ns: tuple[str, str]) -> None:
    table = _edge_tables(mysql_ns, pg_ns)
    verdict = verify_table(mysql_ns[0], pg_ns[0], table)
    assert verdict.equal, verdict
    back = TableRef(TableSchema(pg_ns[1], "edges", EDGE_COLUMNS, ["id"]), mysql_ns[1], "edges")
    assert verify_table(pg_ns[0], mysql_ns[0], back).equal


def test_edge_values_have_the_documented_canonical_text(mysql_ns: tuple[str, str], pg_ns: tuple[str, str]) -> None:
    from sluice.cdc import verify_sql as sq
    from sluice.cdc.verify import Side

    _edge_tables(mysql_ns, pg_ns)
    expected = ("18446744073709551615", "0", "-838:59:59.999000", "-1.0000000000e308")
    for url, namespace in (mysql_ns, pg_ns):
        side = Side(url)
        try:
            texts = ", ".join(sq.canonical(side.engine, c.name, c.type, True) for c in EDGE_COLUMNS[1:5])
            relation = sq.qualified(side.engine, namespace, "edges")
            assert side.query(f"SELECT {texts} FROM {relation} WHERE id = 1")[0] == expected
        finally:
            side.close()


def test_a_changed_key_names_its_differing_columns(pair: tuple[str, str, str, str]) -> None:
    import json

    from sluice.cli.sync_verify import verify_and_report

    my_url, db, pg_url, schema = pair
    run_sql(pg_url, f"""UPDATE "{schema}".employes SET price = price + 1, name = 'other' WHERE id = 12""")
    run_sql(pg_url, f"""UPDATE "{schema}".employes SET hired = hired + 1 WHERE id = 2001""")
    run_sql(pg_url, f'DELETE FROM "{schema}".employes WHERE id = 3')
    verdict = verify_table(my_url, pg_url, ref(db, schema), chunk_rows=1000)
    found = {(tuple(d.key), d.kind, tuple(d.columns)) for d in verdict.differences}
    assert found == {(("3",), "missing", ()), (("12",), "changed", ("price", "name")), (("2001",), "changed", ("hired",))}
    lines: list[str] = []
    verify_and_report("employees", ("hr", my_url), ("warehouse", pg_url), [ref(db, schema)], echo=lines.append)
    assert "changed key 12 (price, name)" in "\n".join(lines)
    lines.clear()
    verify_and_report("employees", ("hr", my_url), ("warehouse", pg_url), [ref(db, schema)], json_output=True, echo=lines.append)
    differences = json.loads(lines[0])["tables"][0]["differences"]
    assert {"key": ["12"], "kind": "changed", "columns": ["price", "name"]} in differences
    assert {"key": ["3"], "kind": "missing"} in differences


def test_zero_and_invalid_dates_compare_as_the_null_the_sync_writes(mysql_ns: tuple[str, str], pg_ns: tuple[str, str]) -> None:
    """A zero or invalid MariaDB date/DATETIME/TIMESTAMP becomes NULL in the target (docs/cdc/mysql.md): equal.
    A real date against NULL still differs."""
    import psycopg

    (my_url, db), (pg_url, schema) = mysql_ns, pg_ns
    columns = [Column("id", "int64", nullable=False), Column("d", "date"), Column("dt", "datetime(3)"), Column("ts", "timestamp")]
    conn = mysql_connect(my_url)
    with conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = 'ALLOW_INVALID_DATES'")
        cur.execute("CREATE TABLE dates (id BIGINT PRIMARY KEY, d DATE, dt DATETIME(3), ts TIMESTAMP NULL)")
        cur.execute(
            "INSERT INTO dates VALUES (1, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00'),"
            " (2, '2024-00-10', '2024-02-31 10:00:00', NULL), (3, '2024-01-00', '2023-02-29 00:00:00.5', NULL),"
            " (4, '1999-12-31', '2024-02-29 23:59:59.999', '2020-01-01 00:00:00')"
        )
    conn.close()
    with psycopg.connect(pg_url, autocommit=True) as pg:
        pg.execute(f'CREATE TABLE "{schema}".dates (id bigint PRIMARY KEY, d date, dt timestamp(3), ts timestamptz)')
        pg.execute(
            f"""INSERT INTO "{schema}".dates VALUES (1, NULL, NULL, NULL), (2, NULL, NULL, NULL), (3, NULL, NULL, NULL),
            (4, '1999-12-31', '2024-02-29 23:59:59.999', '2020-01-01 00:00:00+00')"""
        )
    table = TableRef(TableSchema(db, "dates", columns, ["id"]), schema, "dates")
    verdict = verify_table(my_url, pg_url, table)
    assert verdict.equal, verdict
    with psycopg.connect(pg_url, autocommit=True) as pg:
        pg.execute(f'UPDATE "{schema}".dates SET d = NULL WHERE id = 4')
    verdict = verify_table(my_url, pg_url, table)
    assert not verdict.equal
    assert [(d.kind, d.key, d.columns) for d in verdict.differences] == [("changed", ["4"], ["d"])]


def test_postgresql_values_the_sync_writes_as_null_are_compared_as_null(
    mysql_ns: tuple[str, str], pg_ns: tuple[str, str]
) -> None:
    """NaN and ±Infinity numbers, ±infinity and BC dates and timestamps become NULL in the target
    (docs/cdc/postgresql.md): verify called such a table different (a trial's finding). A real difference still counts."""
    import psycopg

    (my_url, db), (pg_url, schema) = mysql_ns, pg_ns
    columns = [
        Column("id", "int64", nullable=False),
        Column("amount", "decimal(12,2)"),
        Column("big", "decimal"),
        Column("ratio", "float64"),
        Column("day", "date"),
        Column("at", "timestamp(6)"),
        Column("wall", "datetime(6)"),
    ]
    with psycopg.connect(pg_url, autocommit=True) as pg:
        pg.execute("SET TIME ZONE 'UTC'")
        pg.execute(
            f'CREATE TABLE "{schema}".odd (id BIGINT PRIMARY KEY, amount NUMERIC(12,2), big NUMERIC, ratio DOUBLE PRECISION, '
            "day DATE, at TIMESTAMPTZ(6), wall TIMESTAMP(6))"
        )
        pg.execute(
            f"""INSERT INTO "{schema}".odd VALUES
            (1, 'NaN', 'NaN', 'NaN', 'infinity', 'infinity', '-infinity'),
            (2, 1.5, 'Infinity', '-Infinity', '0044-03-15 BC', '0044-03-15 12:00 BC', '0001-12-31 23:59:59 BC'),
            (3, 2.25, 12.5, 0.5, '2026-12-02', '2026-12-02 10:00:00+00', '2026-12-02 10:00:00')"""
        )
    conn = mysql_connect(my_url)
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE odd (id BIGINT PRIMARY KEY, amount DECIMAL(12,2), big DECIMAL(65,30), ratio DOUBLE, day DATE, "
            "at TIMESTAMP(6) NULL, wall DATETIME(6))"
        )
        cur.execute("SET time_zone = '+00:00'")
        cur.execute(
            "INSERT INTO odd VALUES (1, NULL, NULL, NULL, NULL, NULL, NULL), (2, 1.5, NULL, NULL, NULL, NULL, NULL), "
            "(3, 2.25, 12.5, 0.5, '2026-12-02', '2026-12-02 10:00:00', '2026-12-02 10:00:00')"
        )
    conn.close()
    table = TableRef(TableSchema(schema, "odd", columns, ["id"]), db, "odd")
    verdict = verify_table(pg_url, my_url, table)
    assert verdict.equal, verdict
    run_sql(my_url, f"UPDATE `{db}`.odd SET ratio = 0.75 WHERE id = 3")
    verdict = verify_table(pg_url, my_url, table)
    assert not verdict.equal and [(d.key, d.columns) for d in verdict.differences] == [(["3"], ["ratio"])]
