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
from typing import Generic, TypeVar, cast

import pyarrow as pa

from sluice.plugins.base import Settings
from sluice.project.model import ConnectionSpec, SourceSpec

OptionsT = TypeVar("OptionsT", bound=Settings)


@dataclass(frozen=True, slots=True)
class SourceContext:
    """What a source needs besides its spec: the project folder (relative paths) and connections."""

    root: Path
    connections: Mapping[str, ConnectionSpec]


class Source(ABC, Generic[OptionsT]):
    """Reads one kind of input. ``options`` is the spec's typed options (the plugin's ``Settings``)."""

    def __init__(self, spec: SourceSpec, context: SourceContext) -> None:
        self.spec = spec
        self.context = context
        self.options = cast(OptionsT, spec.options)

    @abstractmethod
    def read(self) -> pa.RecordBatchReader:
        """Stream the input as Arrow record batches. Raise TerminalError for problems a retry won't fix."""

    def input_fingerprint(self) -> str | None:
        """A short string that changes when the input changes, or None when unknown (always re-read)."""
        return None
