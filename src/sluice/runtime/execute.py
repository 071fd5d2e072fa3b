"""Do one object's work: read (source) or transform (SQL, Python), write to the lake, publish to a table.

Data moves as Arrow record batches from the reader to the lake file; a destination is fed from the
lake file (or straight from the reader when the object keeps no lake copy). Every write replaces or
is keyed by ``load_id``, so processing an object twice leaves one copy of its output.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from sluice.connectors.base import SourceContext
from sluice.errors import TerminalError, TransientError
from sluice.lake.base import Lake, Then
from sluice.project.model import ObjectSpec, Project
from sluice.transforms.engines import Engine, open_engine


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an object's work produced."""

    rows: int
    location: str | None
    content_hash: str
    destination: str | None = None


def label(obj: ObjectSpec) -> str:
    return f"object {obj.id} ({obj.name})"


class ObjectExecutor:
    """Runs objects of one project. Thread-safe: it holds no per-object state."""

    def __init__(self, project: Project, lake: Lake) -> None:
        self.project = project
        self.lake = lake
        self.source_context = SourceContext(project.root, project.connections)
        self._engines: dict[str, Engine] = {}

    def run(
        self, obj: ObjectSpec, run_id: str, inputs: Mapping[str, str | None], *, delay_s: float = 0.0, fail: bool = False
    ) -> Outcome:
        """Process ``obj`` given its parents' lake locations; raise on failure."""
        if delay_s > 0:
            time.sleep(delay_s)
        if fail:
            raise TransientError(f"forced failure (--fail {obj.id})")
        if obj.kind not in ("source", "noop") and self.engine(obj.engine).writes_lake:
            return self._write_by_engine(obj, run_id, inputs)
        reader = self._read(obj, inputs)
        if reader is None:
            return Outcome(rows=0, location=None, content_hash="")
        load_id = f"{run_id}:{obj.id}"
        destination = obj.destination.table if obj.destination is not None else None
        publish: Then | None = functools.partial(self._publish, obj, load_id=load_id) if obj.destination is not None else None
        if not obj.lake:
            rows = publish(reader) if publish is not None else 0
            return Outcome(rows=rows, location=None, content_hash="", destination=destination)
        # The destination is loaded from the new lake file before that file replaces the old one: a load
        # that fails leaves both the table and the lake as they were.
        written = self.lake.write(self.project.stage(obj.stage).layer, obj.name, reader, then=publish)
        rows = written.published if written.published is not None else written.rows
        return Outcome(rows=rows, location=written.location, content_hash=written.content_hash, destination=destination)

    def _read(self, obj: ObjectSpec, inputs: Mapping[str, str | None]) -> pa.RecordBatchReader | None:
        kind = obj.kind
        if kind == "noop":
            return None
        if kind == "source":
            from sluice.connectors.registry import open_source

            assert obj.source is not None
            return open_source(obj.source, self.source_context).read()
        available = self._parent_locations(obj, inputs)
        return self.engine(obj.engine).run(obj, available, object_label=label(obj))

    def _write_by_engine(self, obj: ObjectSpec, run_id: str, inputs: Mapping[str, str | None]) -> Outcome:
        """An engine that writes the lake itself (Spark): it fills a staging place, committed here (or read
        by the destination and dropped, for an object that keeps no lake copy)."""
        engine = self.engine(obj.engine)
        available = self._parent_locations(obj, inputs)
        destination = obj.destination.table if obj.destination is not None else None
        publish: Then | None = (
            functools.partial(self._publish, obj, load_id=f"{run_id}:{obj.id}") if obj.destination is not None else None
        )
        staged = self.lake.stage(self.project.stage(obj.stage).layer, obj.name)
        try:
            engine.write(obj, available, staged, object_label=label(obj))
            if not obj.lake:
                rows = publish(staged.read()) if publish is not None else 0
                return Outcome(rows=rows, location=None, content_hash="", destination=destination)
            written = staged.commit(then=publish)
        finally:
            staged.discard()
        rows = written.published if written.published is not None else written.rows
        return Outcome(rows=rows, location=written.location, content_hash=written.content_hash, destination=destination)

    def engine(self, name: str) -> Engine:
        """The transform engine plugin ``name``, opened once per executor."""
        engine = self._engines.get(name)
        if engine is None:
            engine = self._engines.setdefault(name, open_engine(name, self.project, self.lake))
        return engine

    def _parent_locations(self, obj: ObjectSpec, inputs: Mapping[str, str | None]) -> dict[str, str]:
        available = {name: location for name, location in inputs.items() if location is not None}
        if not available and obj.parents:
            names = ", ".join(inputs) or "none"
            raise TerminalError(
                f"{label(obj)}: none of its parents ({names}) produced data to transform; give them a source or a sql"
            )
        return available

    def _publish(self, obj: ObjectSpec, data: pa.RecordBatchReader, load_id: str) -> int:
        from sluice.destinations.registry import open_destination

        assert obj.destination is not None
        spec = obj.destination
        destination = open_destination(self.project.connections[spec.connection], Path(self.project.root))
        try:
            return int(destination.write(spec.table, data, spec.mode, spec.key, load_id, spec.schema_evolution))
        finally:
            destination.close()
