"""Sources: what an extracting object reads. One module per kind, all behind :func:`open_source`.

A source turns a :class:`~sluice.project.model.SourceSpec` into a stream of Arrow record batches.
It can also describe its input (:func:`input_fingerprint`) so unchanged inputs are skipped
as fresh; a source that cannot tell (a database query) returns None and always runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

import pyarrow as pa

from sluice.plugins.base import Settings
from sluice.project.model import ConnectionSpec, SourceSpec

if TYPE_CHECKING:
    from sluice.lake.kept_files import SourceFile

OptionsT = TypeVar("OptionsT", bound=Settings)


class SavedCursor(Protocol):
    """An incremental source's cursor for one object, kept in the state store between runs (JSON values)."""

    def load(self) -> Any:
        """The value saved by the last successful run, or None."""

    def save(self, value: Any) -> None:
        """Keep ``value`` for the next run (called only after the object's output is durable)."""


@dataclass(frozen=True, slots=True)
class SourceContext:
    """What a source needs besides its spec: the project folder (relative paths) and connections.

    ``label`` names the object in messages (``object 1001 (customers)``); ``cursor`` is the object's saved
    cursor, given by the executor to every source (only incremental ones use it), None outside a run.
    ``project`` and ``object_id`` name the project and object being run ("" outside a run): the Kafka source
    derives its consumer group from them.
    """

    root: Path
    connections: Mapping[str, ConnectionSpec]
    label: str = "source"
    cursor: SavedCursor | None = None
    project: str = ""
    object_id: str = ""


class Source(ABC, Generic[OptionsT]):
    """Reads one kind of input. ``options`` is the spec's typed options (the plugin's ``Settings``)."""

    def __init__(self, spec: SourceSpec, context: SourceContext) -> None:
        self.spec = spec
        self.context = context
        self.options = cast(OptionsT, spec.options)

    @abstractmethod
    def read(self) -> pa.RecordBatchReader:
        """Stream the input as Arrow record batches. Raise TerminalError for problems a retry won't fix."""

    def commit(self) -> None:
        """Called once the object's output is durable (lake file in place, destination loaded), and for an object whose
        only output is a candidate its ``error`` checks decide on, once that became current (runtime/execute.py).

        An incremental source saves its new cursor here, so a run that fails later never advances it.
        """

    def accumulates(self) -> bool:
        """Whether each read brings only what changed since the last run (an incremental source): its lake output is
        then the previous version plus this read, merged on :attr:`accumulation_key` (:mod:`sluice.runtime.accumulate`).
        False by default."""
        return False

    def incremental(self) -> bool:
        """Whether the source reads incrementally (a saved cursor, committed offsets), whether or not this read did:
        every read of its lake output keeps the last record of each :attr:`accumulation_key`. False by default."""
        return False

    def reread(self, project_root: Path, object_id: int) -> str:
        """What to do so that the next run of an incremental source reads everything again, as a remedy to end an error
        message with: the ``sluice state reset`` command that forgets its cursor."""
        return f"run 'sluice state reset {project_root} --object {object_id}' to read everything again"

    type_setting: str = "column_types"
    """The source option that declares a column's type (said when a column's type changed across runs)."""

    accumulation_key: tuple[str, ...] = ()
    """The columns that identify a record, declared by the source itself (REST's ``incremental.primary_key``); ()
    leaves the choice to the destination's key (:func:`sluice.runtime.accumulate.accumulation_key`)."""

    def input_fingerprint(self) -> str | None:
        """A short string that changes when the input changes, or None when unknown (always re-read)."""
        return None

    def whole_file(self) -> SourceFile | None:
        """After :meth:`read`: the local Parquet file whose whole content ``read``'s stream is (every row and column,
        in the file's order, with its own Arrow schema), which a lake may keep as the output instead of encoding
        the batches again (:meth:`Lake.write_file <sluice.lake.base.Lake.write_file>`); None (the default) otherwise."""
        return None
