"""DuckDB file source (``duckdb:///relative/path.duckdb`` or ``duckdb:////absolute/path.duckdb``), read-only.

DuckDB hands Arrow batches over directly, with its own types.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from sluice.connectors.batching import stream
from sluice.connectors.sql import SqlSource
from sluice.errors import TerminalError


class DuckdbSource(SqlSource):
    """``{type: sql, connection: warehouse, query: "SELECT ..."}`` over a ``duckdb:///`` connection."""

    scheme = "duckdb"

    def read(self) -> pa.RecordBatchReader:
        path, query = self.database_file, self.query
        if not path.is_file():
            raise TerminalError(
                f"duckdb {self.describe()}: database file {path} does not exist; "
                "duckdb:/// URLs with three slashes are relative to the project folder, four slashes are absolute"
            )
        try:
            con = duckdb.connect(str(path), read_only=True)
        except duckdb.IOException as exc:
            raise self.busy(exc) from exc  # most often another process holds the write lock
        except duckdb.Error as exc:
            raise self.rejected(exc) from exc
        try:
            reader = con.sql(query).to_arrow_reader(self.batch_rows)
        except duckdb.Error as exc:
            con.close()
            raise self.rejected(exc) from exc
        except AttributeError:  # con.sql() returns None for a statement without a result
            con.close()
            raise TerminalError(f"duckdb {self.describe()}: the statement returns no rows; use a SELECT") from None
        return stream(reader.schema, reader, on_error=self.translate, on_close=con.close)

    def translate(self, exc: Exception) -> Exception | None:
        return self.rejected(exc) if isinstance(exc, duckdb.Error) else None
