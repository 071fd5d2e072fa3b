"""MariaDB/MySQL apply: multi-row ``INSERT ... ON DUPLICATE KEY UPDATE`` and batched deletes, one transaction.

Rows of a batch (reduced to their net effect) go out as multi-row INSERT statements (PyMySQL's
``executemany`` folds the rows into statements of up to ~1 MB) and deletes as ``DELETE ... WHERE key IN
(...)`` of up to 5,000 keys. The session runs in UTC with strict SQL mode, so a value out of range or too
long is refused (and dead-lettered) rather than silently cut. ``TRUNCATE`` commits implicitly in MySQL, so
a truncate event is applied as ``DELETE FROM`` to stay inside the batch's transaction.

Values: canonical event values pass through PyMySQL's escaping unchanged, except timestamps (microseconds
since the epoch) written as UTC ``DATETIME`` text and masked columns (hex SHA-256).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Sequence
from typing import Any

import pymysql
import pymysql.err

from sluice.cdc.apply_base import SqlApply
from sluice.cdc.apply_common import EPOCH, Key, key_value, mask_values, mysql_type, no_key_error, parse_type, target_columns
from sluice.cdc.apply_positions import TABLE_ROW, load_position
from sluice.cdc.base import SyncError, TableRef
from sluice.cdc.events import Column, Position
from sluice.cdc.mysql_types import quote
from sluice.cdc.plugins import ApplyOptions
from sluice.connectors.mysql import connect_arguments

DELETE_CHUNK = 5_000
# Server errors that refuse one row: duplicate/foreign key/NOT NULL (IntegrityError), out of range, too
# long, bad value or encoding (DataError), and these reported as OperationalError/InternalError:
# 1292 bad datetime, 1366 incorrect string value, 1265 data truncated, 3140 invalid JSON, 4025 CHECK failed.
ROW_CODES = frozenset({1048, 1062, 1264, 1265, 1292, 1366, 1367, 1406, 1451, 1452, 1690, 3140, 3819, 4025})
DEFINITION_CODES = frozenset({1054, 1062, 1142, 1143, 1146})
"""Server errors that refuse a statement for its table's definition: unknown column, duplicate key past the row
bisection, table or column access denied, no such table (:meth:`MysqlApply._definition_error`)."""
SQL_MODE = "STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO"


def _utc_text(value: int | None) -> str | None:
    return None if value is None else (EPOCH + dt.timedelta(microseconds=value)).strftime("%Y-%m-%d %H:%M:%S.%f")


def column_values(column: Column, values: list[Any], masked: bool) -> list[Any]:
    """Canonical values of one column as PyMySQL sends them to this column's target type."""
    if masked:
        return mask_values(values)
    name, _ = parse_type(column.type)
    if name == "timestamp":
        return [_utc_text(value) for value in values]
    return values


class MysqlApply(SqlApply):
    """Applies change events to MariaDB/MySQL (plugin ``apply mysql``). One connection, not thread-safe."""

    now_sql = "NOW(6)"
    keeps_in_insert = True

    def __init__(self, url: str, options: ApplyOptions, sync: str, side: str) -> None:
        super().__init__(options, sync, side)
        arguments = connect_arguments(url)
        try:
            self._conn = pymysql.connect(**arguments, autocommit=False)
        except pymysql.err.OperationalError as exc:
            raise SyncError(f"cannot connect to the MySQL target of sync {sync} ({side}): {exc}", transient=True) from exc
        with self._conn.cursor() as cursor:
            cursor.execute("SET time_zone = '+00:00'")
            cursor.execute(f"SET SESSION sql_mode = '{SQL_MODE}'")
        self._ns = quote(options.namespace)
        self._depth = 0

    def _run(self, sql: str, args: Any = None) -> Any:
        with self._conn.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall()

    # ------------------------------------------------------------------------------------ setup

    def prepare(self, tables: Sequence[TableRef]) -> None:
        """Create the ``<namespace>`` database with positions, dead_letters, conflicts, and missing target tables."""
        for table in tables:
            if not table.source.key and table.no_key == "refuse":
                raise no_key_error(table)
        ns = self._ns
        self._run(f"CREATE DATABASE IF NOT EXISTS {ns} CHARACTER SET utf8mb4")
        self._run(
            f"CREATE TABLE IF NOT EXISTS {ns}.positions (sync VARCHAR(190) NOT NULL, side VARCHAR(190) NOT NULL,"
            " table_name VARCHAR(380) NOT NULL, bus_partition INT NOT NULL DEFAULT 0, position TEXT, position_text TEXT,"
            " snapshot_last_key LONGTEXT,"
            " snapshot_done BOOLEAN NOT NULL DEFAULT FALSE, barrier LONGTEXT, stopped LONGTEXT, updated_at DATETIME(6) NOT NULL,"
            " PRIMARY KEY (sync, side, table_name, bus_partition)) ENGINE=InnoDB"
        )
        self._migrate_positions()
        self._run(
            f"CREATE TABLE IF NOT EXISTS {ns}.dead_letters (id BIGINT AUTO_INCREMENT PRIMARY KEY, sync VARCHAR(190) NOT NULL,"
            " side VARCHAR(190) NOT NULL, table_name VARCHAR(380) NOT NULL, `key` LONGTEXT, op VARCHAR(1), event LONGTEXT,"
            " reason TEXT, at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB"
        )
        self._run(
            f"CREATE TABLE IF NOT EXISTS {ns}.conflicts (id BIGINT AUTO_INCREMENT PRIMARY KEY, sync VARCHAR(190) NOT NULL,"
            " side VARCHAR(190) NOT NULL, table_name VARCHAR(380) NOT NULL, `key` LONGTEXT, event LONGTEXT,"
            " current LONGTEXT, applied BOOLEAN NOT NULL, at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB"
        )
        if self.options.create_tables:
            for table in tables:
                self._create_table(table)
        self._conn.commit()

    def _migrate_positions(self) -> None:
        """A positions table made before partitions (key ``(sync, side, table_name)``): add ``bus_partition``
        (its rows become partition 0's), ``barrier``, ``stopped`` and ``position_text``, and make the key include the
        partition. Under a named lock, so two applies starting together do not both alter it."""
        self._run("SELECT GET_LOCK('sluice_cdc_prepare', 30)")
        try:
            present = {
                _text(row[0])
                for row in self._run(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = 'positions'",
                    (self.options.namespace,),
                )
            }
            changes = [] if "barrier" in present else ["ADD COLUMN barrier LONGTEXT"]
            changes += [] if "stopped" in present else ["ADD COLUMN stopped LONGTEXT"]
            changes += [] if "position_text" in present else ["ADD COLUMN position_text TEXT"]
            if "bus_partition" not in present:
                changes += [
                    "ADD COLUMN bus_partition INT NOT NULL DEFAULT 0",
                    "DROP PRIMARY KEY",
                    "ADD PRIMARY KEY (sync, side, table_name, bus_partition)",
                ]
            if changes:
                self._run(f"ALTER TABLE {self._ns}.positions {', '.join(changes)}")
        finally:
            self._run("SELECT RELEASE_LOCK('sluice_cdc_prepare')")

    def _create_table(self, table: TableRef) -> None:
        key = set(table.source.key)
        masked = set(table.mask)
        definitions = [
            f"{quote(c.name)} {mysql_type(c, c.name in masked, c.name in key)}"
            + ("" if c.nullable and c.name not in key else " NOT NULL")
            for c in target_columns(table)
        ]
        if table.source.key:
            definitions.append(f"PRIMARY KEY ({', '.join(quote(k) for k in table.source.key)})")
        self._run(f"CREATE DATABASE IF NOT EXISTS {quote(table.target_namespace)} CHARACTER SET utf8mb4")
        self._run(
            f"CREATE TABLE IF NOT EXISTS {self._target(table)} ({', '.join(definitions)})"
            " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
        )

    def _target(self, table: TableRef) -> str:
        return f"{quote(table.target_namespace)}.{quote(table.target_name)}"

    def _type_of(self, table: TableRef, column: Column) -> str:
        return mysql_type(column, column.name in table.mask, column.name in table.source.key)

    # -------------------------------------------------------------------------------- positions

    def _begin(self, name: str, partition: int) -> Position | None:
        self._depth = 0
        args = (self.sync, self.side, name, partition)
        self._run(
            f"INSERT INTO {self._ns}.positions (sync, side, table_name, bus_partition, updated_at)"
            " VALUES (%s, %s, %s, %s, NOW(6)) ON DUPLICATE KEY UPDATE updated_at = NOW(6)",
            args,
        )
        rows = self._run(
            f"SELECT position FROM {self._ns}.positions WHERE sync = %s AND side = %s AND table_name = %s AND bus_partition = %s",
            args,
        )
        return load_position(rows[0][0] if rows else None)

    def reset(self, table: TableRef) -> None:
        """Empty the target table and forget the positions of every partition (the table's own row stays: it
        records the resync marker being applied, :mod:`sluice.cdc.apply_positions`).

        One transaction that writes the table's own positions row first: the echo marker, so a both-ways
        capture of this server skips the delete as the sync's own write instead of emptying the other side.
        ``DELETE``, not ``TRUNCATE``: MariaDB logs ``TRUNCATE`` as a statement of its own, outside any transaction."""
        try:
            self._write_row(table.source.qualified, TABLE_ROW, {"stopped": None})  # a stopped table streams again
            self._run(f"DELETE FROM {self._target(table)}")
        except BaseException:
            self._conn.rollback()
            raise
        self._run(
            f"DELETE FROM {self._ns}.positions WHERE sync = %s AND side = %s AND table_name = %s AND bus_partition >= 0",
            (self.sync, self.side, table.source.qualified),
        )
        self._conn.commit()

    def _fetch(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._run(sql, tuple(args))]

    def _on_key(self, columns: Sequence[str]) -> str:
        return "ON DUPLICATE KEY UPDATE " + ", ".join([*(f"{c} = VALUES({c})" for c in columns), "updated_at = NOW(6)"])

    @staticmethod
    def _lock_name(name: str) -> str:
        """MariaDB lock names are at most 64 characters: a digest of ``name``."""
        return "sluice_" + hashlib.sha256(name.encode()).hexdigest()[:40]

    def _try_lock(self, name: str) -> bool:
        rows = self._run("SELECT GET_LOCK(%s, 0)", (self._lock_name(name),))
        self._conn.commit()
        return bool(rows and rows[0][0] == 1)

    def _unlock(self, name: str) -> None:
        if self._conn.open:
            self._conn.rollback()
            self._run("SELECT RELEASE_LOCK(%s)", (self._lock_name(name),))
            self._conn.commit()

    # ------------------------------------------------------------------------------ transaction

    def _commit(self) -> None:
        self._conn.commit()

    def _rollback(self) -> None:
        if self._conn.open:
            self._conn.rollback()

    def _savepoint(self) -> None:
        self._depth += 1
        self._run(f"SAVEPOINT sluice_{self._depth}")

    def _release(self) -> None:
        self._run(f"RELEASE SAVEPOINT sluice_{self._depth}")
        self._depth -= 1

    def _rollback_savepoint(self) -> None:
        self._run(f"ROLLBACK TO SAVEPOINT sluice_{self._depth}")
        self._run(f"RELEASE SAVEPOINT sluice_{self._depth}")
        self._depth -= 1

    def _contended(self, exc: BaseException) -> bool:
        return isinstance(exc, pymysql.err.MySQLError) and bool(exc.args) and exc.args[0] in (1205, 1213)  # lock wait, deadlock

    def _lost(self, exc: BaseException) -> bool:
        # 2006 server has gone away, 2013 lost connection during query, 1053 server shutdown in progress
        if isinstance(exc, pymysql.err.InterfaceError):
            return True
        return isinstance(exc, pymysql.err.OperationalError) and bool(exc.args) and exc.args[0] in (1053, 2006, 2013)

    def _row_error(self, exc: BaseException) -> str | None:
        if isinstance(exc, pymysql.err.IntegrityError | pymysql.err.DataError):
            return str(exc.args[1] if len(exc.args) > 1 else exc)
        if isinstance(exc, pymysql.err.MySQLError) and exc.args and exc.args[0] in ROW_CODES:
            return str(exc.args[1] if len(exc.args) > 1 else exc)
        return None

    def _definition_error(self, exc: BaseException) -> bool:
        return isinstance(exc, pymysql.err.MySQLError) and bool(exc.args) and exc.args[0] in DEFINITION_CODES

    # ------------------------------------------------------------------------------------ rows

    def _upsert(self, table: TableRef, columns: list[Column], rows: list[dict[str, Any]], merge: bool) -> None:
        masked = set(table.mask)
        data = [column_values(c, [row.get(c.name) for row in rows], c.name in masked) for c in columns]
        self._insert(table, columns, data, merge)

    def _upsert_records(self, table: TableRef, columns: list[Column], records: list[Sequence[Any]], merge: bool) -> None:
        masked = set(table.mask)
        data = [column_values(c, [record[i] for record in records], c.name in masked) for i, c in enumerate(columns)]
        self._insert(table, columns, data, merge)

    def _insert(self, table: TableRef, columns: list[Column], data: list[list[Any]], merge: bool) -> None:
        """One multi-row INSERT (PyMySQL batches ``executemany``) of ``data``, one list of values per column."""
        names = ", ".join(quote(c.name) for c in columns)
        sql = f"INSERT INTO {self._target(table)} ({names}) VALUES ({', '.join(['%s'] * len(columns))})"
        if merge:
            key = set(table.source.key)
            updates = [f"{quote(c.name)} = VALUES({quote(c.name)})" for c in columns if c.name not in key] or [
                f"{quote(table.source.key[0])} = {quote(table.source.key[0])}"
            ]
            sql += " ON DUPLICATE KEY UPDATE " + ", ".join(updates)
        with self._conn.cursor() as cursor:
            cursor.executemany(sql, list(zip(*data, strict=True)))

    def _upsert_moved(
        self,
        table: TableRef,
        columns: list[Column],
        kept: list[Column],
        rows: list[dict[str, Any]],
        origins: list[Key],
        outer: bool = False,
    ) -> None:
        """``INSERT ... SELECT`` of the rows (a ``UNION ALL`` of one-row selects, with their origin keys) joined
        to the target's origin rows for the kept columns, ``ON DUPLICATE KEY UPDATE``; DELETE_CHUNK rows a
        statement. Selecting from the insert's table makes the server read the origin rows first."""
        key_columns = self._key_columns(table)
        masked = set(table.mask)
        data = [column_values(c, [row.get(c.name) for row in rows], c.name in masked) for c in columns]
        data += [column_values(c, [origin[i] for origin in origins], c.name in masked) for i, c in enumerate(key_columns)]
        records = list(zip(*data, strict=True))
        width = len(columns) + len(key_columns)
        first = "SELECT " + ", ".join(f"%s AS c{i}" for i in range(width))
        other = " UNION ALL SELECT " + ", ".join(["%s"] * width)
        target = self._target(table)
        names = ", ".join(quote(c.name) for c in columns + kept)
        select = ", ".join([f"s.c{i}" for i in range(len(columns))] + [f"o.{quote(c.name)}" for c in kept])
        match = " AND ".join(f"o.{quote(c.name)} = s.c{len(columns) + i}" for i, c in enumerate(key_columns))
        key = set(table.source.key)
        updates = ", ".join(f"{quote(c.name)} = VALUES({quote(c.name)})" for c in columns + kept if c.name not in key)
        join = "LEFT JOIN" if outer else "JOIN"
        for start in range(0, len(records), DELETE_CHUNK):
            part = records[start : start + DELETE_CHUNK]
            rows_sql = first + other * (len(part) - 1)
            self._run(
                f"INSERT INTO {target} ({names}) SELECT {select} FROM ({rows_sql}) s {join} {target} o ON {match}"
                f" ON DUPLICATE KEY UPDATE {updates}",
                [value for record in part for value in record],
            )

    def _key_columns(self, table: TableRef) -> list[Column]:
        by_name = {column.name: column for column in table.source.columns}
        return [by_name[name] for name in table.source.key]

    def _key_args(self, table: TableRef, keys: list[Key]) -> tuple[str, list[Any]]:
        """``(k1, k2) IN ((%s, %s), ...)`` for ``keys`` and its arguments (values converted as for an insert)."""
        columns = self._key_columns(table)
        masked = set(table.mask)
        data = [column_values(c, [key[i] for key in keys], c.name in masked) for i, c in enumerate(columns)]
        one = "(" + ", ".join(["%s"] * len(columns)) + ")"
        names = "(" + ", ".join(quote(c.name) for c in columns) + ")"
        args = [value for record in zip(*data, strict=True) for value in record]
        return f"{names} IN ({', '.join([one] * len(keys))})", args

    def _delete(self, table: TableRef, keys: list[Key]) -> None:
        for start in range(0, len(keys), DELETE_CHUNK):
            where, args = self._key_args(table, keys[start : start + DELETE_CHUNK])
            self._run(f"DELETE FROM {self._target(table)} WHERE {where}", args)

    def _delete_row(self, table: TableRef, row: dict[str, Any]) -> int:
        columns = [column for column in target_columns(table) if column.name in row]
        masked = set(table.mask)
        args = [column_values(c, [row[c.name]], c.name in masked)[0] for c in columns]
        match = " AND ".join(f"{quote(c.name)} <=> %s" for c in columns)
        with self._conn.cursor() as cursor:
            return int(cursor.execute(f"DELETE FROM {self._target(table)} WHERE {match} LIMIT 1", args))

    def _current_rows(self, table: TableRef, keys: list[Key], columns: list[Column] | None = None) -> dict[Key, dict[str, Any]]:
        columns = target_columns(table) if columns is None else columns
        types = [(c.name, c.type) for c in self._key_columns(table)]
        wanted = {tuple(key_value(t, v) for (_, t), v in zip(types, k, strict=True)): k for k in keys}
        rows: dict[Key, dict[str, Any]] = {}
        select = ", ".join(quote(c.name) for c in columns)
        for start in range(0, len(keys), DELETE_CHUNK):
            where, args = self._key_args(table, keys[start : start + DELETE_CHUNK])
            # FOR UPDATE: the latest rows, locked (absent keys too, by InnoDB's gap locks) until the batch commits.
            for record in self._run(f"SELECT {select} FROM {self._target(table)} WHERE {where} FOR UPDATE", args):
                current = dict(zip((c.name for c in columns), record, strict=True))
                found = tuple(key_value(t, current[n]) for n, t in types)
                rows[wanted.get(found, found)] = current
        return rows

    def _executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(sql, rows)

    def _quote(self, name: str) -> str:
        return quote(name)

    def _truncate(self, table: TableRef) -> None:
        self._run(f"DELETE FROM {self._target(table)}")  # TRUNCATE would commit the batch half-way

    # ---------------------------------------------------------------------------------- schema

    def _target_columns(self, table: TableRef) -> dict[str, str]:
        rows = self._run(
            "SELECT column_name, column_type FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
            " ORDER BY ordinal_position",
            (table.target_namespace, table.target_name),
        )
        return {_text(name): _text(kind) for name, kind in rows}

    def _target_key(self, table: TableRef) -> list[str]:
        rows = self._run(
            "SELECT column_name FROM information_schema.key_column_usage WHERE table_schema = %s AND table_name = %s"
            " AND constraint_name = 'PRIMARY' ORDER BY ordinal_position",
            (table.target_namespace, table.target_name),
        )
        return [_text(row[0]) for row in rows]

    def _set_key(self, table: TableRef, key: Sequence[str], had_key: bool) -> None:
        steps = ["DROP PRIMARY KEY"] if had_key else []
        if key:
            steps.append(f"ADD PRIMARY KEY ({', '.join(quote(k) for k in key)})")
        if steps:
            self._run(f"ALTER TABLE {self._target(table)} {', '.join(steps)}")

    def _same_type(self, target_type: str, wanted: str) -> bool:
        return _normal_type(target_type) == _normal_type(wanted)

    def _alter(self, table: TableRef, action: str, column: Column, other: str = "") -> None:
        target, name = self._target(table), quote(column.name)
        kind = self._type_of(table, column)
        statement = {
            "add": f"ALTER TABLE {target} ADD COLUMN IF NOT EXISTS {name} {kind}{self._default(table, column, 'mysql')}",
            "drop": f"ALTER TABLE {target} DROP COLUMN IF EXISTS {name}",
            "keep": f"ALTER TABLE {target} MODIFY COLUMN {name} {kind} NULL",
            "type": f"ALTER TABLE {target} MODIFY COLUMN {name} {kind}{'' if column.nullable else ' NOT NULL'}",
            "rename": f"ALTER TABLE {target} RENAME COLUMN {name} TO {quote(other)}",
        }[action]
        self._run(statement)

    def close(self) -> None:
        if self._conn.open:
            self._conn.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


_INTEGER_WIDTH = re.compile(r"^(tinyint|smallint|mediumint|int|bigint|year)\(\d+\)")


def _normal_type(text: str) -> str:
    """A MariaDB type as ``information_schema.COLUMNS.COLUMN_TYPE`` and :func:`mysql_type` both reduce to it:
    lower case, no integer display width, ``BOOLEAN`` = ``tinyint``, ``JSON`` = ``longtext`` (MariaDB's alias),
    no ``(0)`` fraction on times."""
    text = _INTEGER_WIDTH.sub(r"\1", text.strip().lower())
    text = re.sub(r"^(datetime|time|timestamp)\(0\)", r"\1", text)
    return {"boolean": "tinyint", "bool": "tinyint", "json": "longtext"}.get(text, text)
