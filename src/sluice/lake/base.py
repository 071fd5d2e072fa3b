"""The lake: where every object's output lands as Parquet, one layer per stage (raw, cleaned, curated).

A lake is addressed by *locations*: opaque strings returned by :meth:`Lake.write` and accepted by
:meth:`Lake.read`. Writing the same ``(layer, name)`` again replaces the previous output atomically,
so a redelivered object never leaves duplicated data behind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    import pyarrow.dataset as ds


@dataclass(frozen=True, slots=True)
class LakeWrite:
    """What a write produced: where, how many rows, a hash of the content (for freshness), and what the
    ``then`` step returned (rows published to a destination), if there was one."""

    location: str
    rows: int
    content_hash: str
    published: int | None = None


Then = Callable[[pa.RecordBatchReader], int]
"""A step run on the new output before it replaces the old one (publishing it to a table); if it raises,
the old output stays."""


class Lake(ABC):
    """One interface per lake backend (a local folder, S3-compatible storage)."""

    @abstractmethod
    def write(
        self,
        layer: str,
        name: str,
        data: pa.RecordBatchReader,
        *,
        then: Then | None = None,
        partition_by: Sequence[str] = (),
    ) -> LakeWrite:
        """Stream ``data`` into ``layer/name`` (replacing what was there) and describe the result.

        ``then`` gets the new output as a reader before it replaces the old one; when it raises, nothing
        is replaced and the error propagates (a failed load leaves the lake as it was). ``partition_by``
        names columns whose values split the output into Hive-style folders (``dt=2026-11-30/``).
        Raises TerminalError for a bad layer, name or partition column (one line).
        """

    @abstractmethod
    def read(self, location: str) -> pa.RecordBatchReader:
        """Stream a stored output back as Arrow batches."""

    @abstractmethod
    def exists(self, location: str) -> bool:
        """True when ``location`` holds an output."""

    @abstractmethod
    def parquet_path(self, location: str) -> str:
        """A path or URL of ``location``'s Parquet data (a local path DuckDB's ``read_parquet`` opens, or an
        ``s3://`` URL that only a DuckDB with the httpfs extension could open: use :meth:`duckdb_input`)."""

    def current_location(self, layer: str, name: str) -> str | None:
        """The location of ``layer/name``'s current output, or None when it has none (the location
        :meth:`write` returned for it, whichever way it was written). Raises what :meth:`exists` raises."""
        location = f"{layer}/{name}"
        return location if self.exists(location) else None

    def duckdb_input(self, location: str) -> str | ds.Dataset:
        """What a DuckDB query scans for ``location``: a path for ``read_parquet``, or a pyarrow dataset to
        register (streamed by DuckDB through Arrow, with projection and filter push-down, no httpfs needed)."""
        return self.parquet_path(location)

    def versions(self, location: str) -> list[str]:
        """The stored versions of ``location``, oldest first (a lake that replaces in place holds one)."""
        return ["current"] if self.exists(location) else []
