"""SQL transforms: run an object's SQL in DuckDB over its parents' Parquet outputs, streaming the result.

Each parent is a view named after it, so ``SELECT country, count(*) FROM users GROUP BY 1`` reads the
``users`` parent straight from the lake. A dotted name (``raw.customers``) is a view in a schema of that
name, so parents of different stages that share a name can be told apart
(:func:`sluice.transforms.engines.sql_tables`).

>>> inputs = {"users": "lake/raw/users.parquet"}
>>> reader = run_sql("SELECT count(*) AS n FROM users", inputs, object_label="3001 stats")  # doctest: +SKIP
>>> reader.read_all()                                                                      # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from sluice.connectors.batching import stream
from sluice.errors import TerminalError, did_you_mean

if TYPE_CHECKING:
    import pyarrow.dataset as ds

BATCH_ROWS = 64 * 1024
_MISSING_TABLE = re.compile(r"Table with name (\S+?) does not exist", re.IGNORECASE)
_DUCKDB_HINT = re.compile(r"\n?Did you mean \"[^\"]*\"\?")


def quote_identifier(name: str) -> str:
    """``name`` as a DuckDB identifier: ``"my ""odd"" table"``."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """``text`` as a DuckDB string literal: ``'it''s'``."""
    return "'" + text.replace("'", "''") + "'"


def run_sql(sql: str, inputs: Mapping[str, str | ds.Dataset], *, object_label: str) -> pa.RecordBatchReader:
    """Run ``sql`` with one view per input (table name -> Parquet path or pyarrow dataset) and stream the result.

    A name ``schema.table`` creates the view ``table`` in the schema ``schema``. A pyarrow dataset (an S3
    lake's output) is registered with the connection and scanned by DuckDB through Arrow, batch by batch,
    with column projection and filters pushed down to pyarrow (no httpfs extension needed).

    The in-memory DuckDB connection lives until the returned reader is exhausted or dropped. DuckDB's
    errors become a TerminalError naming ``object_label`` and quoting DuckDB's message.
    """
    con = duckdb.connect(":memory:")
    try:
        create_input_views(con, inputs)
        relation = con.sql(sql)
        if relation is None:
            raise TerminalError(f"{object_label}: the SQL returns no rows; an object's SQL must be a query (SELECT ...)")
        reader = relation.to_arrow_reader(BATCH_ROWS)
    except duckdb.Error as exc:
        con.close()
        raise sql_error(exc, inputs, object_label) from exc
    except BaseException:
        con.close()
        raise

    def translate(exc: Exception) -> Exception | None:
        return sql_error(exc, inputs, object_label) if isinstance(exc, duckdb.Error) else None

    return stream(reader.schema, reader, on_error=translate, on_close=con.close)


def create_view(con: duckdb.DuckDBPyConnection, name: str, body: str) -> None:
    """``CREATE VIEW name AS body`` on ``con``; a dotted ``schema.table`` name creates the schema first. Raises duckdb.Error."""
    schema, dot, table = name.rpartition(".")
    if dot:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema)}")
    view = f"{quote_identifier(schema)}.{quote_identifier(table)}" if dot else quote_identifier(name)
    con.execute(f"CREATE VIEW {view} AS {body}")


def create_input_views(con: duckdb.DuckDBPyConnection, inputs: Mapping[str, str | ds.Dataset]) -> None:
    """One view per input on ``con``: ``name`` (``schema.table`` makes the schema) over a Parquet path
    (``read_parquet``) or a pyarrow dataset (registered, scanned through Arrow). Raises duckdb.Error."""
    for index, (name, path) in enumerate(inputs.items()):
        if isinstance(path, str):
            create_view(con, name, f"SELECT * FROM read_parquet({quote_literal(path)})")
        else:  # a pyarrow dataset (pyarrow.dataset is imported only by the lakes that make one)
            relation = f"__sluice_input_{index}"
            con.register(relation, path)
            create_view(con, name, f"SELECT * FROM {relation}")


def sql_error(exc: Exception, inputs: Mapping[str, object], object_label: str) -> TerminalError:
    """A TerminalError quoting DuckDB, with the input tables (and the closest one) when a table is unknown."""
    message = str(exc).strip()
    missing = _MISSING_TABLE.search(message)
    if not missing:
        return TerminalError(f"{object_label}: SQL failed: {message}")
    name = missing.group(1).strip('"')
    first, _, rest = _DUCKDB_HINT.sub("", message).partition("\n")  # DuckDB suggests its own system tables
    available = ", ".join(inputs) or "none (the object has no parents)"
    text = (
        f"{object_label}: SQL failed: {first}{did_you_mean(name, inputs)} Available input tables: {available} "
        "(an object's SQL can read its parents, by name)"
    )
    return TerminalError(text + ("\n" + rest.strip("\n") if rest.strip() else ""))
