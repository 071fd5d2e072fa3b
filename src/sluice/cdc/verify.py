"""``sluice sync verify``: does a target table hold what its source table holds? Counted and hashed in the databases.

:func:`verify_table` splits the source table into key-ordered chunks of ``chunk_rows`` rows (the chunk bounds
are keys read from the source with ``ORDER BY key LIMIT 1 OFFSET n``), and for each key range asks both
databases for ``count(*)`` and an order-independent checksum of the rows' canonical texts
(:mod:`sluice.cdc.verify_sql`), so rows never travel to Python. A chunk whose count or checksum differ is
split again (bounds read from the side with more rows) until it holds at most :data:`LEAF_ROWS` rows; only
then are the keys and row MD5s of that small range read and compared, to name the differing keys (at most
``max_keys``). This is the chunk-and-bisect scheme of Percona's pt-table-checksum and of data-diff
(datafold), with a checksum both engines compute the same way.

Columns compared: the source table's columns minus ``TableRef.drop`` and ``TableRef.mask`` (masked values are
hashes in the target, not comparable); a compared column missing from the target makes the table unequal
(``missing_columns``). A table without a primary key is compared as one chunk (counts and checksum, no keys).

Errors: :class:`VerifyError` (a :class:`~sluice.errors.SluiceError`) when a database cannot be reached, a
table is missing, or a URL scheme is neither MySQL/MariaDB nor PostgreSQL; the message names the table.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from sluice.cdc import verify_sql as sq
from sluice.cdc.base import TableRef
from sluice.cdc.events import Column
from sluice.errors import SluiceError
from sluice.urls import connection_scheme, libpq_url

LEAF_ROWS = 2_000
"""A differing range of at most this many rows (on both sides) is compared key by key."""
SPLIT_WAYS = 16
"""A differing range of more rows is split into about this many sub-ranges."""


class VerifyError(SluiceError):
    """Verification could not run (a database unreachable, a table missing, an unsupported URL)."""


@dataclass(frozen=True, slots=True)
class KeyDifference:
    """One differing key: ``kind`` is ``changed`` (both sides, other values), ``missing`` (not in the target) or
    ``extra`` (only in the target). ``key`` holds the key's canonical texts, in key order."""

    key: list[str]
    kind: str
    columns: list[str] = field(default_factory=list)
    """For ``changed``: the compared columns whose canonical texts differ (per-column MD5s of that key's row)."""


@dataclass(slots=True)
class TableVerdict:
    """What :func:`verify_table` found for one table. Row counts are whole-table; ``seconds`` is wall time."""

    source_table: str
    target_table: str
    equal: bool = True
    source_rows: int = 0
    target_rows: int = 0
    differences: list[KeyDifference] = field(default_factory=list)
    """At most ``max_keys`` differing keys, in key order within each differing chunk."""
    more_differences: bool = False
    """True when more keys differ than ``differences`` lists."""
    chunks_compared: int = 0
    chunks_differing: int = 0
    columns: list[str] = field(default_factory=list)
    """The columns compared."""
    missing_columns: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def differing_keys(self) -> list[list[str]]:
        """The keys of :attr:`differences`."""
        return [difference.key for difference in self.differences]


class Side:
    """One open database connection of a verification: runs queries in a UTC, UTF-8 session."""

    def __init__(self, url: str) -> None:
        scheme = connection_scheme(url)
        if scheme == "mysql":
            import pymysql

            from sluice.connectors.mysql import connect_arguments

            self.conn: Any = pymysql.connect(**connect_arguments(url), autocommit=True)
            version = str(self.query("SELECT VERSION()")[0][0])
            self.engine = sq.Engine("mysql", mariadb="mariadb" in version.lower())
        elif scheme == "postgresql":
            import psycopg

            self.conn = psycopg.connect(libpq_url(url), autocommit=True)
            self.engine = sq.Engine("postgresql")
        else:
            raise VerifyError(f"cannot verify over {scheme}://: verify compares MySQL/MariaDB and PostgreSQL tables only")
        for statement in sq.SESSION_SQL[self.engine.dialect]:
            self.query(statement, fetch=False)

    def query(self, sql: str, params: Sequence[Any] = (), fetch: bool = True) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` run with ``params`` (``%s`` placeholders; a literal ``%`` written ``%%``)."""
        with self.conn.cursor() as cursor:
            cursor.execute(sql, tuple(params))
            return [tuple(row) for row in cursor.fetchall()] if fetch else []

    def columns(self, namespace: str, name: str) -> list[str] | None:
        """The table's column names, or None when the table does not exist."""
        rows = self.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            (namespace, name),
        )
        return [str(row[0]) for row in rows] or None

    def close(self) -> None:
        self.conn.close()


@dataclass(slots=True)
class _Table:
    """One side's table as the queries need it."""

    side: Side
    relation: str
    key: list[Column]
    hash_sql: str
    key_sql: str
    row_md5: str
    column_md5s: str
    """Per compared column, the MD5 of its ``v``/``n``-prefixed canonical text, comma-separated."""

    def count_and_hash(self, lower: list[Any] | None, upper: list[Any] | None) -> tuple[int, str]:
        where = sq.range_condition(self.side.engine, self.key, lower is not None, upper is not None)
        sql = f"SELECT COUNT(*), {self.hash_sql} FROM {self.relation} WHERE {where}"
        row = self.side.query(sql, [*(lower or []), *(upper or [])])[0]
        return int(row[0]), str(row[1])

    def bounds(self, lower: list[Any] | None, upper: list[Any] | None, step: int) -> list[list[Any]]:
        """Keys ``step`` rows apart in ``lower < key <= upper``: the upper bounds of sub-ranges (the last one left open)."""
        found: list[list[Any]] = []
        engine, width = self.side.engine, len(self.key)
        order = sq.order_by(engine, self.key)
        while True:
            after = found[-1] if found else lower
            where = sq.range_condition(engine, self.key, after is not None, upper is not None)
            columns = ", ".join(sq.quote(engine, c.name) for c in self.key)
            sql = f"SELECT {columns} FROM {self.relation} WHERE {where} ORDER BY {order} LIMIT 1 OFFSET {step - 1}"
            rows = self.side.query(sql, [*(after or []), *(upper or [])])
            if not rows:
                return found
            found.append(list(rows[0][:width]))

    def leaf_rows(self, lower: list[Any] | None, upper: list[Any] | None) -> dict[tuple[str, ...], str]:
        """Canonical key texts -> row MD5 of every row in ``lower < key <= upper``."""
        where = sq.range_condition(self.side.engine, self.key, lower is not None, upper is not None)
        sql = f"SELECT {self.key_sql}, {self.row_md5} FROM {self.relation} WHERE {where}"
        rows = self.side.query(sql, [*(lower or []), *(upper or [])])
        width = len(self.key)
        return {tuple("" if v is None else str(v) for v in row[:width]): str(row[width]) for row in rows}

    def leaf_columns(self, lower: list[Any] | None, upper: list[Any] | None) -> dict[tuple[str, ...], tuple[str, ...]]:
        """Canonical key texts -> per-column MD5s of every row in ``lower < key <= upper``."""
        where = sq.range_condition(self.side.engine, self.key, lower is not None, upper is not None)
        sql = f"SELECT {self.key_sql}, {self.column_md5s} FROM {self.relation} WHERE {where}"
        rows = self.side.query(sql, [*(lower or []), *(upper or [])])
        width = len(self.key)
        return {tuple("" if v is None else str(v) for v in row[:width]): tuple(str(v) for v in row[width:]) for row in rows}


def _table(side: Side, namespace: str, name: str, key: list[Column], compared: list[Column], cross: bool) -> _Table:
    engine = side.engine
    key_sql = ", ".join(sq.canonical(engine, c.name, c.type, cross) for c in key)
    relation = sq.qualified(engine, namespace, name)
    column_md5s = ", ".join(sq.row_hash(engine, [column], cross) for column in compared)
    return _Table(
        side, relation, key, sq.chunk_hash(engine, compared, cross), key_sql, sq.row_hash(engine, compared, cross), column_md5s
    )


def verify_table(
    source_url: str, target_url: str, table: TableRef, chunk_rows: int = 100_000, max_keys: int = 100
) -> TableVerdict:
    """Compare ``table``'s source (at ``source_url``) and target (at ``target_url``); see the module for how.

    ``chunk_rows`` (>= 1): rows per top-level chunk; ``max_keys``: most differing keys listed.
    Raises :class:`VerifyError` when a side cannot be reached or its table is missing."""
    with ExitStack() as stack:
        source = stack.enter_context(_open(source_url, table.source.qualified))
        target = stack.enter_context(_open(target_url, table.target_qualified))
        return compare(source, target, table, chunk_rows, max_keys)


@contextmanager
def _open(url: str, table: str) -> Iterator[Side]:
    try:
        side = Side(url)
    except SluiceError:
        raise
    except Exception as exc:
        raise VerifyError(f"cannot connect to verify {table}: {exc}") from exc
    try:
        yield side
    finally:
        side.close()


def compare(source: Side, target: Side, table: TableRef, chunk_rows: int, max_keys: int) -> TableVerdict:
    """:func:`verify_table` over open connections."""
    started = time.perf_counter()
    schema = table.source
    verdict = TableVerdict(schema.qualified, table.target_qualified)
    source_columns = source.columns(schema.namespace, schema.name)
    target_columns = target.columns(table.target_namespace, table.target_name)
    for where, found in ((schema.qualified, source_columns), (table.target_qualified, target_columns)):
        if found is None:
            raise VerifyError(f"table {where} does not exist; check the sync's tables and rename rules")
    left_out = set(table.drop) | set(table.mask)
    wanted = [c for c in schema.columns if c.name not in left_out]
    verdict.missing_columns = [c.name for c in wanted if c.name not in set(target_columns or ())]
    compared = [c for c in wanted if c.name not in verdict.missing_columns]
    verdict.columns = [c.name for c in compared]
    key = [c for name in schema.key if (c := schema.column(name)) is not None]
    cross = source.engine.dialect != target.engine.dialect
    left = _table(source, schema.namespace, schema.name, key, compared, cross)
    right = _table(target, table.target_namespace, table.target_name, key, compared, cross)
    if not key:
        verdict.chunks_compared = 1
        ours, theirs = left.count_and_hash(None, None), right.count_and_hash(None, None)
        verdict.source_rows, verdict.target_rows = ours[0], theirs[0]
        verdict.chunks_differing = int(ours != theirs)
    else:
        bounds: list[list[Any] | None] = [None, *left.bounds(None, None, max(1, chunk_rows)), None]
        for lower, upper in pairwise(bounds):
            verdict.chunks_compared += 1
            (n_left, h_left), (n_right, h_right) = left.count_and_hash(lower, upper), right.count_and_hash(lower, upper)
            verdict.source_rows += n_left
            verdict.target_rows += n_right
            if (n_left, h_left) != (n_right, h_right):
                verdict.chunks_differing += 1
                _drill(left, right, lower, upper, max(n_left, n_right), n_left >= n_right, verdict, max_keys)
    verdict.equal = verdict.chunks_differing == 0 and not verdict.missing_columns
    verdict.seconds = time.perf_counter() - started
    return verdict


def _drill(
    left: _Table,
    right: _Table,
    lower: list[Any] | None,
    upper: list[Any] | None,
    rows: int,
    left_bigger: bool,
    verdict: TableVerdict,
    max_keys: int,
) -> None:
    """Name the differing keys of a range whose counts or checksums differ (at most ``max_keys`` in all)."""
    if len(verdict.differences) >= max_keys:
        verdict.more_differences = True
        return
    if rows <= LEAF_ROWS:
        _leaf(left, right, lower, upper, verdict, max_keys)
        return
    splitter = left if left_bigger else right
    inner = splitter.bounds(lower, upper, max(1, rows // SPLIT_WAYS))
    if upper is not None and inner and inner[-1] == upper:
        inner.pop()
    ranges: list[list[Any] | None] = [lower, *inner, upper]
    for sub_lower, sub_upper in pairwise(ranges):
        (n_left, h_left), (n_right, h_right) = (
            left.count_and_hash(sub_lower, sub_upper),
            right.count_and_hash(sub_lower, sub_upper),
        )
        if (n_left, h_left) != (n_right, h_right):
            _drill(left, right, sub_lower, sub_upper, max(n_left, n_right), n_left >= n_right, verdict, max_keys)


def _leaf(
    left: _Table, right: _Table, lower: list[Any] | None, upper: list[Any] | None, verdict: TableVerdict, max_keys: int
) -> None:
    ours, theirs = left.leaf_rows(lower, upper), right.leaf_rows(lower, upper)
    differing = []
    for key in ours.keys() | theirs.keys():
        mine, other = ours.get(key), theirs.get(key)
        if mine != other:
            differing.append(KeyDifference(list(key), "missing" if other is None else "extra" if mine is None else "changed"))
    differing.sort(key=lambda d: [(len(part), part) for part in d.key])
    room = max_keys - len(verdict.differences)
    listed = differing[:room]
    if any(d.kind == "changed" for d in listed) and verdict.columns:
        # only now, for a range already known to differ: which columns of the changed rows differ
        mine_columns, other_columns = left.leaf_columns(lower, upper), right.leaf_columns(lower, upper)
        for difference in listed:
            if difference.kind == "changed":
                key = tuple(difference.key)
                pairs = zip(mine_columns.get(key, ()), other_columns.get(key, ()), strict=False)
                difference.columns.extend(name for name, (a, b) in zip(verdict.columns, pairs, strict=False) if a != b)
    verdict.differences.extend(listed)
    if len(differing) > room:
        verdict.more_differences = True
