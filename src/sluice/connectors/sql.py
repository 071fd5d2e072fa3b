"""What every database source shares: the named connection, the table or query, and error wording.

One module per database builds on :class:`SqlSource`: :mod:`~sluice.connectors.sqlite`,
:mod:`~sluice.connectors.postgres`, :mod:`~sluice.connectors.mysql` and :mod:`~sluice.connectors.duckdb_source`.

>>> quote_table("public.orders", '"')
'"public"."orders"'
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from sluice.connectors.base import Source
from sluice.connectors.plugins import SqlSourceOptions
from sluice.errors import ConfigError, TerminalError, TransientError, did_you_mean
from sluice.project.model import ConnectionSpec
from sluice.urls import sqlite_path


def quote_table(table: str, quote: str) -> str:
    """Quote a possibly schema-qualified table name, one identifier per dot-separated part."""
    return ".".join(quote + part.replace(quote, quote * 2) + quote for part in table.split("."))


class SqlSource(Source[SqlSourceOptions]):
    """A source reading a ``table`` or the result of a ``query`` over a named ``connection``."""

    scheme: ClassVar[str] = "sql"
    identifier_quote: ClassVar[str] = '"'

    @property
    def connection(self) -> ConnectionSpec:
        """The connection the spec names, or a TerminalError listing the known ones."""
        name = self.options.connection
        connection = self.context.connections.get(name)
        if connection is None:
            known = ", ".join(sorted(self.context.connections)) or "none defined"
            raise TerminalError(
                f"sql source: unknown connection {name!r}.{did_you_mean(name, self.context.connections)} "
                f"Known connections: {known}"
            )
        return connection

    @property
    def database_file(self) -> Path:
        """The file of a file database's connection (``sqlite:///``, ``duckdb:///``), relative paths under the
        project folder; a TerminalError when the URL names none (in memory, another form)."""
        try:
            return sqlite_path(self.connection.url, self.context.root)
        except ConfigError as exc:
            raise TerminalError(f"{self.scheme} source on connection {self.connection.name!r}: {exc}") from None

    @property
    def batch_rows(self) -> int:
        return self.options.batch_size

    @property
    def query(self) -> str:
        """The SQL to run: the ``query`` option as written, or ``SELECT * FROM <table>``."""
        table, query = self.options.table, self.options.query
        if query is not None and query.strip():
            return query.strip().rstrip(";").strip()
        if table is not None and table.strip():
            return f"SELECT * FROM {quote_table(table.strip(), self.identifier_quote)}"
        raise TerminalError(f"sql source on connection {self.connection.name!r} needs a 'table' or a 'query' option")

    def describe(self) -> str:
        """``connection 'shop', table 'orders'`` or ``connection 'shop', query 'SELECT ...'`` for messages."""
        table = self.options.table
        if table:
            return f"connection {self.connection.name!r}, table {table!r}"
        query = " ".join((self.options.query or "").split())
        return f"connection {self.connection.name!r}, query {_shorten(query)!r}"

    def unreachable(self, exc: BaseException | str) -> TransientError:
        """The error for a database that cannot be reached now (worth retrying)."""
        return TransientError(
            f"{self.scheme} {self.describe()}: cannot connect: {_summary(exc)}; "
            "check that the server is running and the connection URL is right"
        )

    def rejected(self, exc: BaseException | str) -> TerminalError:
        """The error for SQL the database refuses (unknown table, syntax error...): retrying won't help."""
        return TerminalError(f"{self.scheme} {self.describe()}: the database rejected the query: {_summary(exc)}")

    def busy(self, exc: BaseException | str) -> TransientError:
        """The error for a lock, a timeout or a dropped connection while reading (worth retrying)."""
        return TransientError(f"{self.scheme} {self.describe()}: {_summary(exc)}; will retry")


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _summary(exc: BaseException | str) -> str:
    """The driver's message on one line (the first three lines of it)."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    return " ".join(" ".join(line.split()) for line in text.splitlines()[:3])
