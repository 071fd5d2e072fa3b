"""The DuckDB side of the window operator: event times, the SQL that places records in windows and aggregates them.

Every query reads Arrow tables registered on the operator's own cursor of one in-memory DuckDB database per
process, and event times are int64 microseconds since the epoch (UTC). A window's start is
``floor(t / slide) * slide - k * slide`` for ``k`` in ``0 .. ceil(size / slide) - 1``, kept when the window
still contains ``t`` (``start + size > t``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from sluice.errors import TerminalError
from sluice.streaming.window_options import EVENT_US, WINDOW_COLUMNS, WindowOptions
from sluice.transforms.sql import quote_identifier

WINDOW_START = "__sluice_window_start"
TIME = pa.timestamp("us", tz="UTC")
_STRINGS = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
_DATABASE: list[duckdb.DuckDBPyConnection] = []
_DATABASE_LOCK = threading.Lock()


def cursor() -> duckdb.DuckDBPyConnection:
    """A connection of its own (registered tables are per connection) to the process's window database, in UTC.

    One database for every operator: a cursor costs microseconds where a new database costs ~50 ms.
    """
    with _DATABASE_LOCK:
        if not _DATABASE:
            _DATABASE.append(duckdb.connect(":memory:"))
        con = _DATABASE[0].cursor()
    con.execute("SET TimeZone = 'UTC'")
    return con


def event_times(con: duckdb.DuckDBPyConnection, table: pa.Table, options: WindowOptions) -> pa.Array:
    """The time column as int64 microseconds since the epoch (UTC), null where missing or unreadable.

    Raises TerminalError when the time column or a group_by column is missing, or the time column is not a
    timestamp, a date or strings.
    """
    name = options.time_column
    if name not in table.column_names:
        columns = ", ".join(table.column_names) or "none"
        raise TerminalError(
            f"window.time_column: {name!r} is not a column of the micro-batch (columns: {columns}): fix the option"
        )
    for column in options.group_by:
        if column not in table.column_names:
            raise TerminalError(f"window.group_by: {column!r} is not a column of the micro-batch: fix the option")
    values = table.column(name)
    kind = values.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        micros = pc.cast(values, pa.timestamp("us"), safe=False)  # a zone's instants are stored in UTC
    elif any(check(kind) for check in _STRINGS):
        relation = con.from_arrow(pa.table({"t": values}))
        micros = relation.select("epoch_us(TRY_CAST(t AS TIMESTAMPTZ)) AS t").to_arrow_table().column("t")
    else:
        raise TerminalError(
            f"window.time_column: {name!r} is {kind}, not a time: give a timestamp column or ISO-8601 strings "
            "(2024-05-01T12:00:00Z); cast it in the object's SQL if needed"
        )
    return pc.cast(micros, pa.int64()).combine_chunks()


def placed(size: int, slide: int, low: int, high: int) -> str:
    """``records`` with one row per (record, window) for the windows ending in (low, high], as ``WINDOW_START``."""
    event = quote_identifier(EVENT_US)
    floor = f"({event} - ((({event} % {slide}) + {slide}) % {slide}))"
    count = -(-size // slide)
    if count == 1:
        expand = f"SELECT records.*, {floor} AS {WINDOW_START} FROM records"
    else:
        expand = (
            f"SELECT records.*, {floor} - __sluice_k.k * {slide} AS {WINDOW_START} FROM records, range({count}) AS __sluice_k(k)"
        )
    end = f"{WINDOW_START} + {size}"
    return (
        f"SELECT * FROM ({expand} WHERE {event} > {low - size} AND {event} < {high}) "
        f"WHERE {end} > {event} AND {end} > {low} AND {end} <= {high}"
    )


def aggregate_records(options: WindowOptions, size: int, slide: int, low: int, high: int) -> str:
    """The windows ending in (low, high] aggregated from the raw ``records``, sorted."""
    aggregates = [f"{sql} AS {quote_identifier(name)}" for name, sql in options.aggregates.items()]
    return _grouped(options, aggregates, placed(size, slide, low, high), order=True)


def partials(options: WindowOptions, partial_sql: list[str], combines: list[str], size: int, slide: int, low: int) -> str:
    """The partial aggregates of ``records`` for its windows ending after ``low``, merged with ``state``'s."""
    columns = [f"{sql} AS __sluice_p{index}" for index, sql in enumerate(partial_sql)]
    batch = _grouped(options, columns, placed(size, slide, low, 2**62), order=False)
    merged = [f"{sql} AS __sluice_p{index}" for index, sql in enumerate(combines)]
    return _grouped(options, merged, f"{batch} UNION ALL BY NAME SELECT * FROM state", order=False)


def finals(options: WindowOptions, final_sql: Mapping[str, str]) -> str:
    """The aggregates of the closed windows of ``closed`` (merged partial aggregates), sorted."""
    keys = [WINDOW_START, *(quote_identifier(column) for column in options.group_by)]
    outputs = [f"{sql} AS {quote_identifier(name)}" for name, sql in final_sql.items()]
    order = ", ".join(f"{key} NULLS LAST" for key in keys)
    return f"SELECT {', '.join([*keys, *outputs])} FROM closed ORDER BY {order}"


def _grouped(options: WindowOptions, outputs: list[str], body: str, *, order: bool) -> str:
    keys = [WINDOW_START, *(quote_identifier(column) for column in options.group_by)]
    sql = f"SELECT {', '.join([*keys, *outputs])} FROM ({body}) GROUP BY {', '.join(keys)}"
    return sql + (f" ORDER BY {', '.join(f'{key} NULLS LAST' for key in keys)}" if order else "")


def run(con: duckdb.DuckDBPyConnection, sql: str, tables: Mapping[str, pa.Table]) -> pa.Table:
    """``sql`` over ``tables`` (name -> Arrow table) as an Arrow table. Raises TerminalError quoting DuckDB."""
    try:
        for name, table in tables.items():
            con.register(name, table)
        return con.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        message = str(exc).strip().splitlines()[0]
        raise TerminalError(f"window.aggregates: DuckDB cannot compute them: {message}: fix the aggregate expressions") from exc
    finally:
        for name in tables:
            con.unregister(name)


def with_window_columns(table: pa.Table, size: int) -> pa.Table:
    """``WINDOW_START`` (int64 microseconds) replaced by window_start and window_end, timestamp[us, UTC]."""
    starts = pc.cast(table.column(WINDOW_START), pa.int64())
    rest = table.drop_columns([WINDOW_START])
    bounds = [starts.cast(TIME), pc.add(starts, size).cast(TIME)]
    return pa.table([*bounds, *rest.columns], names=[*WINDOW_COLUMNS, *rest.column_names])
