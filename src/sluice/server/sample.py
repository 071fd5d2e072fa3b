"""A few rows of an object's lake output, for ``GET /objects/{id}``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from sluice.errors import TerminalError
from sluice.lake.base import Lake

SAMPLE_ROWS = 10


def sample_rows(lake: Lake, location: str, limit: int = SAMPLE_ROWS) -> tuple[dict[str, Any] | None, str | None]:
    """``({"columns": [...], "rows": [[...], ...]}, None)`` with up to ``limit`` rows, or ``(None, why)``.

    Values are plain Python (dates, decimals and bytes are encoded as strings by the JSON encoder).
    """
    try:
        table = _head(lake, location, limit)
    except Exception as exc:
        return None, f"cannot read {location} from the lake: {exc}"
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    rows = [list(row) for row in zip(*columns, strict=True)] if columns else []
    return {"columns": list(table.column_names), "rows": rows}, None


def count_rows(lake: Lake, location: str) -> int | None:
    """The rows of the output at ``location`` from its Parquet footers (nothing scanned); None when unreadable."""
    try:
        found = lake.duckdb_input(location)
        if isinstance(found, ds.Dataset):
            return int(found.count_rows())
        path = Path(found)
        if path.is_file():
            return int(pq.ParquetFile(path).metadata.num_rows)
        return int(ds.dataset(path.parent, format="parquet").count_rows())  # a parts folder's '<folder>/*.parquet'
    except Exception:
        return None


def _head(lake: Lake, location: str, limit: int) -> pa.Table:
    try:
        path = Path(lake.parquet_path(location))
    except TerminalError:  # an append-only dataset has no single path: read its batches
        path = Path()
    if path.is_file():  # a local file: read only the first rows
        parquet = pq.ParquetFile(path)
        batch = next(parquet.iter_batches(batch_size=limit), None)
        return parquet.schema_arrow.empty_table() if batch is None else pa.Table.from_batches([batch]).slice(0, limit)
    reader = lake.read(location)
    batches: list[pa.RecordBatch] = []
    rows = 0
    for batch in reader:
        batches.append(batch)
        rows += batch.num_rows
        if rows >= limit:
            break
    return pa.Table.from_batches(batches, reader.schema).slice(0, limit)
