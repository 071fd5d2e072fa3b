"""The lake: where every object's output lands as Parquet, one layer per stage (raw, cleaned, curated).

A lake is addressed by *locations*: opaque strings returned by :meth:`Lake.write` and accepted by
:meth:`Lake.read`. Writing the same ``(layer, name)`` again replaces the previous output atomically,
so a redelivered object never leaves duplicated data behind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa


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
    """One interface per lake backend (local folder now, S3-compatible storage later)."""

    @abstractmethod
    def write(self, layer: str, name: str, data: pa.RecordBatchReader, *, then: Then | None = None) -> LakeWrite:
        """Stream ``data`` into ``layer/name`` (replacing what was there) and describe the result.

        ``then`` gets the new output as a reader before it replaces the old one; when it raises, nothing
        is replaced and the error propagates (a failed load leaves the lake as it was).
        """

    @abstractmethod
    def read(self, location: str) -> pa.RecordBatchReader:
        """Stream a stored output back as Arrow batches."""

    @abstractmethod
    def exists(self, location: str) -> bool:
        """True when ``location`` holds an output."""

    @abstractmethod
    def parquet_path(self, location: str) -> str:
        """A path or URL DuckDB can pass to ``read_parquet`` for ``location``."""
