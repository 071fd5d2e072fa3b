"""Destinations: database tables an object's result is published to (append, replace or merge).

Every write is idempotent per ``load_id`` (``run_id:object_id``): a redelivered object that already
loaded does not append its rows twice, and merge replaces rows by key so re-running never duplicates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from sluice.project.model import ConnectionSpec, DestinationSpec, SchemaEvolution, WriteMode


class Destination(ABC):
    """A database that receives tables.

    ``root`` is the folder relative file paths in the connection URL are resolved against (the project folder).
    """

    connects_ahead: ClassVar[bool] = False
    """Whether :meth:`connect` may run before the first load, in another thread than the load's
    (:mod:`sluice.destinations.warm`): a server connection, not a database file that connecting would lock."""

    def __init__(self, connection: ConnectionSpec, root: Path | None = None) -> None:
        self.connection = connection
        self.root = root

    def connect(self) -> None:  # noqa: B027 - optional hook
        """Open the connection now rather than at the first statement (a destination that :attr:`connects_ahead`);
        raises what that first statement would. The default does nothing."""

    @abstractmethod
    def write(
        self,
        table: str,
        data: pa.RecordBatchReader,
        mode: WriteMode,
        key: Sequence[str],
        load_id: str,
        schema_evolution: SchemaEvolution = "strict",
        options: DestinationSpec | None = None,
    ) -> int:
        """Write ``data`` into ``table`` (created from the Arrow schema if missing); return rows written.

        ``schema_evolution`` says what happens when a column's type in the data does not fit the table's
        without loss: ``strict`` refuses the load, ``widen`` alters the column (docs/destinations.md).
        ``options`` is the object's whole destination spec (an instance of the plugin's options class,
        e.g. PostgreSQL's partition_by and indexes); None: no options beyond the arguments.
        """

    def has_table(self, table: str) -> bool:
        """Whether ``table`` exists now; False when it cannot be told (planning then runs the object again)."""
        return False

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
