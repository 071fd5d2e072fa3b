"""The lake: where every object's output lands as Parquet, one layer per stage (raw, cleaned, curated).

A lake is addressed by *locations*: opaque strings returned by :meth:`Lake.write` (or
:meth:`StagedOutput.commit`) and accepted by :meth:`Lake.read`. Writing the same ``(layer, name)`` again
replaces the previous output atomically, so a redelivered object never leaves duplicated data behind.

An output is one Parquet file (what :meth:`Lake.write` streams) or a folder of Parquet parts (what an
engine such as Spark writes by itself into :meth:`Lake.stage`'s staging place); readers cannot tell.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

from sluice.destinations.pipe import tee_into
from sluice.errors import TerminalError

if TYPE_CHECKING:
    import pyarrow.dataset as ds

    from sluice.lake.kept_files import SourceFile


@dataclass(frozen=True, slots=True)
class Compacted:
    """What one :meth:`Lake.compact` did: files before and after, and files rewritten (0: nothing was worth it)."""

    files_before: int
    files_after: int
    rewritten: int


@dataclass(frozen=True, slots=True)
class LakeWrite:
    """What a write produced: where, how many rows, a hash of the content (for freshness), and what the
    ``then`` step returned (rows published to a destination), if there was one."""

    location: str
    rows: int
    content_hash: str
    published: int | None = None


@dataclass(frozen=True, slots=True)
class StoredOutput:
    """One output found in a layer (:meth:`Lake.outputs`): its lake name, location, and last commit (epoch seconds)."""

    name: str
    location: str
    written_at: float


LOGICAL_DATE_KEY = b"sluice.logical_date"
"""Schema metadata key of an output copied by the default :meth:`Lake.promote`: the logical date it holds."""

Then = Callable[[pa.RecordBatchReader], int]
"""A step run on the new output before it replaces the old one (publishing it to a table); if it raises,
the old output stays."""

T = TypeVar("T")


def keep_then(data: pa.RecordBatchReader, keep: Callable[[pa.RecordBatchReader], T], then: Then | None) -> tuple[T, int | None]:
    """Run ``keep`` (writing the new output, not yet visible) on ``data`` and ``then`` on the same batches at once;
    return ``(what keep returns, what then returns or None)``.

    How a lake runs :meth:`Lake.write`'s ``then`` step: ``keep`` writes the output on the calling thread while
    ``then`` (the destination's load) runs in a helper thread fed through a bounded queue
    (:func:`sluice.destinations.pipe.tee_into`), so the time is about the longer of the two rather than their sum.
    ``then``'s stream ends only once ``keep`` has returned (the new output is complete), so a destination
    commits only then; when ``keep`` (or ``data``) raises, ``then``'s stream raises and the destination rolls
    back; when ``then`` raises, ``keep`` is stopped and its error is raised. Either way the caller does not
    replace the old output (it removes what ``keep`` wrote). Without ``then``, just ``keep(data)``.
    """
    if then is None:
        return keep(data), None
    return tee_into(data, then, keep)


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

        ``then`` gets the new output's batches as a reader (the batches of ``data``, while they are written:
        :func:`keep_then`); its reader ends once the new output is complete, and the new output replaces the
        old one only after ``then`` returned. When it raises, nothing is replaced and the error propagates (a
        failed load leaves the lake as it was); when the write fails, ``then``'s reader raises (the load rolls
        back). ``partition_by`` names columns whose values split the output into Hive-style folders (``dt=2026-11-30/``).
        Raises TerminalError for a bad layer, name or partition column (one line).
        """

    def write_file(
        self, layer: str, name: str, file: SourceFile, data: pa.RecordBatchReader, *, then: Then | None = None
    ) -> LakeWrite:
        """:meth:`write` of ``data``, which streams the whole content of the local Parquet file ``file``: a lake may
        keep a copy of the file itself as the output instead of encoding ``data`` again, when every reader would
        see the same table either way (:mod:`sluice.lake.kept_files`). ``then`` loads ``data``'s batches as in
        :meth:`write`, and the output is replaced only after it returned. The default encodes ``data``."""
        return self.write(layer, name, data, then=then)

    def flush(self) -> None:  # noqa: B027 - optional: nothing left running
        """Return once the work writes left running after they returned is done: a manifest-committed write
        (S3, a partitioned local output) prunes old versions in a thread of its own (:mod:`sluice.lake.versioned`).
        Later writes of the same output and :meth:`versions` wait for it themselves; the process waits for it at exit."""

    @abstractmethod
    def read(self, location: str) -> pa.RecordBatchReader:
        """Stream a stored output back as Arrow batches."""

    @abstractmethod
    def exists(self, location: str) -> bool:
        """True when ``location`` holds an output."""

    @abstractmethod
    def parquet_path(self, location: str) -> str:
        """A path, glob or URL of ``location``'s Parquet data: a local path or glob DuckDB's ``read_parquet`` opens
        (a file, a parts folder's ``<folder>/*.parquet``, a glob of a partitioned output's current files), or an
        ``s3://`` URL that only a DuckDB with the httpfs extension could open: use :meth:`duckdb_input`."""

    def current_location(self, layer: str, name: str) -> str | None:
        """The location of ``layer/name``'s current output, or None when it has none (the location
        :meth:`write` returned for it, whichever way it was written). Raises what :meth:`exists` raises."""
        location = f"{layer}/{name}"
        return location if self.exists(location) else None

    def promote(
        self, layer: str, name: str, location: str, logical_date: str | None = None, partition_by: Sequence[str] = ()
    ) -> None:
        """Make the current data of ``location`` (another output of this lake, written by :meth:`write` or
        :meth:`stage`) the output ``layer/name`` as well, in one atomic replacement (readers see the old output or
        the new one), marked as holding ``logical_date`` (ISO text, read back by :meth:`promoted_date`; None: no
        date). Later writes of ``location`` do not change ``layer/name``. A lake that can point at the data or link
        its files does so (the local and S3 lakes: :mod:`sluice.lake.dated`); the default copies it, one
        :meth:`write` of its batches with the date in the schema metadata (``sluice.logical_date``). Raises what
        :meth:`read` and :meth:`write` raise."""
        reader = self.read(location)
        metadata = dict(reader.schema.metadata or {})
        if logical_date:
            metadata[LOGICAL_DATE_KEY] = logical_date.encode()
        marked = pa.RecordBatchReader.from_batches(reader.schema.with_metadata(metadata), reader)
        self.write(layer, name, marked, partition_by=partition_by)

    def promoted_date(self, layer: str, name: str) -> str | None:
        """The ``logical_date`` given to the :meth:`promote` that made ``layer/name`` current; None when it has no
        output or was written otherwise (:meth:`write`, :meth:`stage`). The default reads the schema metadata."""
        location = self.current_location(layer, name)
        if location is None:
            return None
        reader = self.read(location)
        try:
            value = (reader.schema.metadata or {}).get(LOGICAL_DATE_KEY)
        finally:
            reader.close()
        return value.decode() if value else None

    def outputs(self, layer: str, prefix: str) -> list[StoredOutput]:
        """The outputs of ``layer`` whose name starts with ``prefix``, with when each was last written (for pruning
        per-date outputs: :func:`sluice.lake.dated.prune_dated`). The default knows none."""
        return []

    def remove(self, layer: str, name: str) -> None:
        """Delete the output ``layer/name`` with every version it keeps; nothing when it has none. A reader in the
        middle of it may fail. Raises TerminalError for a lake that cannot (the default)."""
        raise TerminalError(f"the {type(self).__name__} lake cannot remove outputs; delete {layer}/{name} by hand")

    def remove_superseded(self, layer: str, name: str) -> None:
        """Delete what the output ``layer/name`` no longer uses and its readers have had time to finish with (the
        local lake's parts folders of earlier promotions, :func:`~sluice.lake.local_parts.remove_old_parts`); called
        by :func:`~sluice.lake.dated.prune_dated`. The default has nothing to delete."""
        return None

    def duckdb_input(self, location: str) -> str | ds.Dataset:
        """What a DuckDB query scans for ``location``: a path for ``read_parquet``, or a pyarrow dataset to
        register (streamed by DuckDB through Arrow, with projection and filter push-down, no httpfs needed)."""
        return self.parquet_path(location)

    def versions(self, location: str) -> list[str]:
        """The stored versions of ``location``, oldest first (a lake that replaces in place holds one)."""
        return ["current"] if self.exists(location) else []

    def stage(self, layer: str, name: str) -> StagedOutput:
        """A staging place for an engine that writes ``layer/name`` itself (Spark), committed atomically.

        The contract every lake that supports it keeps:

        - :attr:`StagedOutput.uri` is a folder URI no reader looks at (``file:///…/raw/.users.parquet.<token>.tmp``
          for the local lake; an S3 lake would give a prefix of its own). The engine writes a folder of
          Parquet parts there (``*.parquet``; other files such as Spark's ``_SUCCESS`` and ``.crc`` are ignored).
        - :meth:`StagedOutput.commit` makes those parts the output of ``layer/name`` in one atomic step,
          replacing the previous one: readers see the old output or the new one, never a mix. It returns the
          same :class:`LakeWrite` as :meth:`write` (the location of ``layer/name`` is the same whichever way
          it was written); rows and content hash come from the parts' Parquet footers, without reading data.
          ``then`` runs on the staged parts before the replacement, as in :meth:`write`.
        - :meth:`StagedOutput.discard` removes what was staged (after a failure, or once ``then`` has read it
          for an object that keeps no lake copy); a crash leaves a staging place that a later write of the
          same output clears.

        A lake that cannot give engines a place to write raises TerminalError (the default).
        """
        raise TerminalError(
            f"the {type(self).__name__} lake cannot take output written by an engine itself (Spark); use the local lake"
        )

    def append(
        self,
        layer: str,
        name: str,
        data: pa.RecordBatchReader,
        *,
        commit: Mapping[str, Any],
        token: str | None = None,
        state: bytes | None = None,
    ) -> LakeWrite:
        """Add ``data`` to the append-only dataset ``layer/name`` as one micro-batch, committed together with
        ``commit`` (a JSON-able record: a streaming object's offsets, batch number, state reference).

        Readers see every committed micro-batch and never a file of an uncommitted one; a writer killed at
        any moment leaves the dataset and :meth:`last_commit` as they were before or after the batch, never
        between. ``token`` makes the append idempotent: the token of the last commit again adds nothing
        (rows 0). ``state``: opaque bytes (a window operator's state) committed with the batch, read back with
        :meth:`last_state`. :attr:`LakeWrite.rows` counts the batch's rows, :attr:`LakeWrite.location` is the
        dataset's (``raw/events``), readable with :meth:`read` and :meth:`duckdb_input` like any output.
        Design in :mod:`sluice.lake.appends` (Delta Lake's ``txn`` action, reduced). Raises TerminalError for
        a dataset written by :meth:`write`, a batch whose columns do not fit the dataset's, or a lake that
        cannot append (the default).
        """
        raise TerminalError(f"the {type(self).__name__} lake cannot append micro-batches; use the local or the s3 lake")

    def last_commit(self, layer: str, name: str) -> dict[str, Any] | None:
        """The ``commit`` record of the last :meth:`append` to ``layer/name`` (None: nothing appended yet)."""
        return None

    def compact(self, layer: str, name: str, *, target_bytes: int, min_files: int) -> Compacted:
        """Rewrite the small files of the append-only dataset ``layer/name`` into files of about ``target_bytes``
        (bytes) in one atomic commit, when at least ``min_files`` would be; the rows, their order, the last commit
        record and state stay as they were (:func:`sluice.lake.appends.compact`). Only the dataset's writer may
        call it, between two of its appends. Raises TerminalError for a lake that cannot append (the default)."""
        raise TerminalError(f"the {type(self).__name__} lake cannot append micro-batches; use the local or the s3 lake")

    def last_state(self, layer: str, name: str) -> bytes | None:
        """The ``state`` given to the last :meth:`append` to ``layer/name`` (None: none)."""
        return None

    def appended(self, layer: str, name: str) -> LakeWrite | None:
        """The append-only dataset ``layer/name`` as a whole (location, rows, content hash changing with each
        micro-batch), or None when nothing was appended to it."""
        return None

    def stage_append(self, layer: str, name: str) -> StagedAppend:
        """A place an engine (Spark) writes one micro-batch's Parquet parts into, then commits like :meth:`append`.

        :attr:`StagedAppend.uri` is a folder URI (``file:///…/raw/events/v=<version>``, ``s3://bucket/…/v=<version>``)
        that no reader looks at until :meth:`StagedAppend.commit` lists its ``*.parquet`` files in the
        manifest with the commit record (Spark's batch id as ``token`` makes a replayed batch add nothing).
        """
        raise TerminalError(f"the {type(self).__name__} lake cannot append micro-batches; use the local or the s3 lake")

    def parquet_files(self, location: str) -> list[str]:
        """Every committed Parquet file of ``location`` (local paths or ``s3://`` URLs), for an engine reading it
        itself; the one way to list an append-only dataset, whose folder may hold uncommitted files."""
        return [self.parquet_path(location)]


class StagedAppend(ABC):
    """One micro-batch an engine writes itself, committed or discarded (see :meth:`Lake.stage_append`)."""

    uri: str
    """Folder URI the engine writes Parquet parts into."""

    @abstractmethod
    def commit(self, *, commit: Mapping[str, Any], token: str | None = None, schema: pa.Schema | None = None) -> LakeWrite:
        """Append the staged parts with ``commit``, atomically (see :meth:`Lake.append`); ``schema``: the batch's
        Arrow schema when the parts' own types differ from it but cast to it (Spark's microsecond timestamps for
        declared milliseconds), recorded in the manifest and applied by every reader; None: the parts' footers'."""

    @abstractmethod
    def discard(self) -> None:
        """Remove what was staged; harmless after :meth:`commit` or a second call."""


class StagedOutput(ABC):
    """A place an engine writes ``layer/name``'s Parquet parts to, then commits or discards (see :meth:`Lake.stage`)."""

    uri: str
    """Folder URI the engine writes Parquet parts into (``file:///abs/path`` for the local lake)."""

    @abstractmethod
    def commit(self, *, then: Then | None = None) -> LakeWrite:
        """Make the staged parts the output, atomically; ``then`` reads them first (it raising leaves the old output)."""

    @abstractmethod
    def read(self) -> pa.RecordBatchReader:
        """The staged parts as Arrow batches (before :meth:`commit` or :meth:`discard`)."""

    @abstractmethod
    def discard(self) -> None:
        """Remove what was staged; harmless after :meth:`commit` or a second call."""
