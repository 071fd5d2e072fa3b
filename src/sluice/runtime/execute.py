"""Do one object's work: read (source) or transform (SQL, Python), write to the lake, publish to a table.

Data moves as Arrow record batches from the reader to the lake file; a destination is fed from the
lake file (or straight from the reader when the object keeps no lake copy). Every write replaces or
is keyed by ``load_id``, so processing an object twice leaves one copy of its output.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from sluice.checks.places import Fetch, LoadScope, where
from sluice.checks.run import Checked, CheckRunner, LoadRefused, register_series
from sluice.connectors.base import Source, SourceContext
from sluice.destinations.sql import LoadedRows
from sluice.destinations.warm import WarmDestinations
from sluice.errors import TerminalError, TransientError
from sluice.lake.base import Lake, LakeWrite, Then
from sluice.lake.kept_files import SourceFile
from sluice.project.model import ObjectSpec, Project, layer_of, parent_keys
from sluice.runtime.accumulate import Accumulation, accumulation_key
from sluice.state.base import StateStore
from sluice.transforms.engines import Engine, open_engine


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an object's work produced. ``pending``: its lake output awaiting promotion to the plain output once its
    checks passed (:meth:`ObjectExecutor.promote`), with its logical date: a per-date output (the date), or the
    candidate of an object with ``error`` checks (None); None when the object wrote its plain output itself."""

    rows: int
    location: str | None
    content_hash: str
    destination: str | None = None
    pending: tuple[LakeWrite, str | None] | None = None
    checked: Checked | None = None
    """The object's checks when they ran inside its load's transaction (:class:`InLoadChecks`), else None."""
    accumulated: bool = False
    """The lake output is an incremental source's previous output plus this run's records
    (:mod:`sluice.runtime.accumulate`): not this load's rows alone."""
    reread: str = ""
    """For a source that reads incrementally (:meth:`Source.incremental`: a cursor or committed offsets), what to do to
    read everything again (:meth:`Source.reread`); "" for another."""
    commit: Callable[[], None] | None = None
    """The source's :meth:`~sluice.connectors.base.Source.commit` (saving its cursor), left to be called once the
    object's checks passed and its candidate output became current: set for an object whose only output is its
    lake candidate (no destination, an ``error`` check), so a refused output leaves the cursor where it was."""


@dataclass(slots=True)
class InLoadChecks:
    """Runs an object's checks inside the transaction of its PostgreSQL destination's load, once its rows are in (the
    destination's ``before_commit``): an ``error`` check that fails raises :class:`~sluice.checks.run.LoadRefused`,
    which rolls the load back, and with it the lake write it goes with, so nothing is written (docs/checks.md).
    Checks with ``rows: load`` look at the load's rows only (``loaded``: a merge's or append's staged rows, or the
    table a ``replace`` filled). ``checked``: the results, once they ran."""

    runner: CheckRunner
    obj: ObjectSpec
    run_id: str
    parents: dict[int, str]
    checked: Checked | None = None

    @property
    def keep_load(self) -> bool:
        """Whether a check looks at the load's rows only: an append then stages them (:meth:`SqlDestination.write`)."""
        return any(check.rows == "load" for check in self.obj.checks)

    def __call__(self, fetch: Fetch, loaded: LoadedRows) -> None:
        load = LoadScope(loaded.relation, loaded.rows) if loaded.relation is not None or loaded.only_table else None
        self.checked = self.runner.run(self.obj, self.run_id, run_outputs=self.parents, fetch=fetch, load=load)
        if self.checked.failure:
            raise LoadRefused(self.checked)


def label(obj: ObjectSpec) -> str:
    return f"object {obj.id} ({obj.name})"


def key_setting(obj: ObjectSpec, source: Source) -> str:  # type: ignore[type-arg]
    """Where ``obj``'s accumulation key is declared, to correct it: ``incremental.primary_key in sluice.yaml:12``."""
    declared = "source" if source.accumulation_key else "destination"
    setting = "incremental.primary_key" if declared == "source" else "the destination's key"
    line = obj.origin.line_of(declared)
    return f"{setting} in {obj.origin.file}{f':{line}' if line else ''}"


def guarded(obj: ObjectSpec) -> bool:
    """Whether ``obj``'s lake output waits for its checks before it becomes current: it has an ``error`` check."""
    return obj.lake and any(check.severity == "error" for check in obj.checks)


@dataclass(frozen=True, slots=True)
class StateCursor:
    """One object's incremental cursor in the state store, as JSON text (:class:`~sluice.connectors.base.SavedCursor`)."""

    state: StateStore
    project: str
    object_id: int

    def load(self) -> object:
        text = self.state.source_cursors(self.project).get(self.object_id)
        return None if text is None else json.loads(text)

    def save(self, value: object) -> None:
        self.state.save_source_cursor(self.project, self.object_id, json.dumps(value), time.time())


class ObjectExecutor:
    """Runs objects of one project. Thread-safe: it holds no per-object state.

    ``state`` keeps incremental sources' cursors; without it they read from their initial value every time.
    """

    def __init__(
        self, project: Project, lake: Lake, state: StateStore | None = None, destinations: WarmDestinations | None = None
    ) -> None:
        self.project = project
        self.lake = lake
        self.state = state
        self.destinations = destinations or WarmDestinations(Path(project.root))
        """Where loads take their destination: one connected ahead by the run, else a new one."""
        self.source_context = SourceContext(project.root, project.connections)
        self._engines: dict[str, Engine] = {}
        from sluice.scheduling.templating import dated_objects

        self.dated = dated_objects(project)
        """Objects writing one lake output per logical date in a run that has one (:mod:`sluice.lake.dated`)."""
        register_series(project)  # the check counters' series at zero, before any check runs

    def run(
        self,
        obj: ObjectSpec,
        run_id: str,
        inputs: Mapping[str, str | None],
        *,
        delay_s: float = 0.0,
        fail: bool = False,
        logical_date: str | None = None,
        load_key: str | None = None,
    ) -> Outcome:
        """Process ``obj`` given its parents' lake locations (this run's: ``ObjectReady.inputs``); raise on failure.

        ``logical_date`` (ISO text): the run's; an object depending on it (:attr:`dated`) then writes its own lake
        output for that date, and an object with an ``error`` check its candidate: :meth:`promote` makes it the plain
        output once the checks passed (:mod:`sluice.lake.dated`).

        ``load_key``: what a destination records the load under (``<load_key>:<object id>``, the load id that makes a
        load idempotent) instead of ``run_id``: a backfill date run again after a cancelled run gives that run's, so
        what the cancelled run loaded is not loaded twice (``RunOptions.load_key``).
        """
        if delay_s > 0:
            time.sleep(delay_s)
        if fail:
            raise TransientError(f"forced failure (--fail {obj.id})")
        in_load = self._in_load(obj, run_id, inputs)
        outcome = self._run(obj, run_id, inputs, logical_date, load_key, in_load)
        return dataclasses.replace(outcome, checked=in_load.checked) if in_load is not None else outcome

    def _in_load(self, obj: ObjectSpec, run_id: str, inputs: Mapping[str, str | None]) -> InLoadChecks | None:
        """The checks to run inside the load of ``obj``'s destination: all of an object checked in PostgreSQL, in the
        table its destination loads; None otherwise (they run after the write)."""
        spec = obj.destination
        if spec is None or not obj.checks:
            return None
        found = where(self.project, obj)
        if isinstance(found, str) or (found.place, found.connection, found.table) != ("postgres", spec.connection, spec.table):
            return None
        runner = CheckRunner(self.project, self.lake, self.state)
        return InLoadChecks(runner, obj, run_id, self._parent_ids(obj, inputs))

    def _run(
        self,
        obj: ObjectSpec,
        run_id: str,
        inputs: Mapping[str, str | None],
        logical_date: str | None,
        load_key: str | None,
        in_load: InLoadChecks | None,
    ) -> Outcome:
        if obj.kind not in ("source", "noop") and self.engine(obj.engine).writes_lake:
            # Spark: the engine writes the lake itself, a table model as its SQL bound to its parents
            plain = self._model_as_object(obj) if obj.model is not None else obj
            return self._write_by_engine(plain, load_key or run_id, inputs, logical_date, in_load)
        rows: int | None = None
        source = self._source(obj)
        if obj.model is not None:
            reader, rows, target = self._model(obj, inputs)
            if reader is None:  # materialised where it ran: a changed hash tells children to run again
                digest = hashlib.blake2b(f"{run_id}:{obj.id}:{rows}".encode(), digest_size=16).hexdigest()
                return Outcome(rows=rows or 0, location=None, content_hash=digest, destination=target)
        else:
            reader = source.read() if source is not None else self._read(obj, inputs)
        if reader is None:
            return Outcome(rows=0, location=None, content_hash="")
        file = source.whole_file() if source is not None else None
        accumulation = self._accumulation(obj, source, reader) if source is not None else None
        accumulated = accumulation is not None and not accumulation.whole
        try:
            if accumulation is not None:  # the previous output plus this run's records, not these alone
                reader, file = accumulation.merged(), None
                rows = accumulation.delta_rows if accumulated else None
            outcome = self._write(obj, load_key or run_id, reader, rows, file, logical_date, in_load, accumulation)
        finally:
            if accumulation is not None:
                accumulation.close()
        if source is None:
            return outcome
        outcome = dataclasses.replace(
            outcome, accumulated=accumulated, reread=source.reread(self.project.root, obj.id) if source.incremental() else ""
        )
        if obj.destination is None and guarded(obj):  # nothing loaded but this candidate: its checks decide
            return dataclasses.replace(outcome, commit=source.commit)
        source.commit()  # the output is durable now: an incremental source may advance its cursor
        return outcome

    def _accumulation(self, obj: ObjectSpec, source: Source, reader: pa.RecordBatchReader) -> Accumulation | None:  # type: ignore[type-arg]
        """For an incremental source and an object with a lake output: when it read only what changed
        (:meth:`Source.accumulates`), the previous output plus ``reader``'s records merged on the declared key; when it
        read everything, those records with the last one of each key only (the same rule) (:mod:`sluice.runtime.accumulate`);
        None otherwise (the output is what was read). Reads ``reader`` whole. Raises TerminalError when the source read
        only what changed but the previous output is missing (it would replace every record read before)."""
        if not obj.lake or not source.incremental():
            return None
        key = accumulation_key(obj, source)
        reread = source.reread(self.project.root, obj.id)
        layer = layer_of(self.project, obj)
        previous = None
        if source.accumulates():
            previous = self.lake.current_location(layer, obj.name)
            if previous is None:
                raise TerminalError(
                    f"{label(obj)}: the previous lake output {layer}/{obj.name} is missing, yet the source read only what "
                    f"changed since its saved cursor (or committed offsets); nothing was written and the cursor did not "
                    f"move: {reread}"
                )
        elif not key:
            return None
        if obj.date_parts:
            from sluice.project.objets_dates import with_date_parts

            reader = with_date_parts(reader, obj.date_parts, obj.date_column, label(obj))
        setting = key_setting(obj, source)
        return Accumulation.open(
            self.lake, previous, reader, key, label(obj), key_setting=setting, reread=reread, type_setting=source.type_setting
        )

    def check(
        self,
        obj: ObjectSpec,
        run_id: str,
        location: str | None,
        inputs: Mapping[str, str | None] | None = None,
        *,
        accumulated: bool = False,
    ) -> Checked:
        """Run ``obj``'s checks on the output just written (``location``: its lake location), where it is
        (docs/checks.md), a parent it refers to read from this run's ``inputs``; nothing for an object without
        checks. A lake output this run wrote whole is this load's rows (checks with ``rows: load`` cover it as the
        load); one that ``accumulated`` an incremental source's records, or a table checked after its load, is
        covered as the table. Raises what :meth:`CheckRunner.run` raises."""
        if not obj.checks:
            return Checked()
        parents = self._parent_ids(obj, inputs or {})
        found = where(self.project, obj)
        in_lake = location is not None and not accumulated and not isinstance(found, str) and found.place != "postgres"
        load = LoadScope() if in_lake else None
        return CheckRunner(self.project, self.lake, self.state).run(obj, run_id, location, run_outputs=parents, load=load)

    def _parent_ids(self, obj: ObjectSpec, inputs: Mapping[str, str | None]) -> dict[int, str]:
        """This run's parents' lake locations by object id (what ``relationships`` checks read)."""
        return {pid: loc for pid, key in parent_keys(self.project, obj).items() if (loc := inputs.get(key)) is not None}

    def _source(self, obj: ObjectSpec) -> Source | None:  # type: ignore[type-arg]
        if obj.kind != "source":
            return None
        from sluice.connectors.registry import open_source

        assert obj.source is not None
        cursor = StateCursor(self.state, self.project.name, obj.id) if self.state is not None else None
        context = dataclasses.replace(
            self.source_context, label=label(obj), cursor=cursor, project=self.project.name, object_id=str(obj.id)
        )
        return open_source(obj.source, context)

    def _lake_name(self, obj: ObjectSpec, logical_date: str | None) -> str:
        """``obj``'s lake name in a run of ``logical_date``: its own per date when it depends on the date, else its
        candidate when it has an ``error`` check (promoted once they passed), else its plain name
        (:mod:`sluice.lake.dated`)."""
        from sluice.lake.dated import candidate_name, dated_name

        if logical_date and obj.id in self.dated:
            return dated_name(obj.name, logical_date)
        if guarded(obj):
            return candidate_name(obj.name)
        return obj.name

    def _pending(self, obj: ObjectSpec, written: LakeWrite, logical_date: str | None) -> tuple[LakeWrite, str | None] | None:
        if logical_date and obj.id in self.dated:
            return written, logical_date
        return (written, None) if guarded(obj) else None

    def promote(self, obj: ObjectSpec, outcome: Outcome) -> Outcome:
        """Make ``outcome``'s pending output the plain one (:func:`sluice.lake.dated.promote`: a per-date output
        when it is the latest date's, a candidate always); ``outcome`` as it is for one without. Called once the
        object's checks passed: an output whose ``error`` check failed never becomes the plain output. Returns the
        outcome children read: a candidate's is the plain output's location. Raises what the lake raises."""
        if outcome.pending is None:
            return outcome
        from sluice.lake.dated import promote

        written, logical_date = outcome.pending
        layer = layer_of(self.project, obj)
        promote(self.lake, layer, obj.name, written, logical_date, obj.partition_by)
        if logical_date is not None:
            return outcome
        return dataclasses.replace(outcome, location=self.lake.current_location(layer, obj.name), pending=None)

    def has_current(self, obj: ObjectSpec) -> bool:
        """Whether ``obj`` has a plain output in the lake (what a failed check leaves current). Raises what the lake
        raises."""
        return self.lake.current_location(layer_of(self.project, obj), obj.name) is not None

    def _write(
        self,
        obj: ObjectSpec,
        load_key: str,
        reader: pa.RecordBatchReader,
        rows: int | None = None,
        file: SourceFile | None = None,
        logical_date: str | None = None,
        in_load: InLoadChecks | None = None,
        accumulation: Accumulation | None = None,
    ) -> Outcome:
        """Store ``reader`` in the lake and/or its destination; ``rows``: the rows to report when not the rows stored;
        ``file``: the Parquet file ``reader`` streams whole (:meth:`Source.whole_file`), which the lake may keep as is
        when the object stores it unchanged (no date parts, no ``partition_by``); ``in_load``: checks to run inside
        the destination's load; ``accumulation``: ``reader`` is an incremental source's new lake version, and an
        ``append`` or ``merge`` destination loads only this run's records (a ``replace`` one the whole version)."""
        destination = obj.destination.table if obj.destination is not None else None
        publish = self._publisher(obj, load_key, in_load)
        if accumulation is not None and publish is not None and obj.destination is not None and obj.destination.mode != "replace":
            publish = accumulation.then_delta(publish)
        if obj.date_parts and accumulation is None:  # (an accumulation's records have them already)
            from sluice.project.objets_dates import with_date_parts

            reader = with_date_parts(reader, obj.date_parts, obj.date_column, label(obj))
        if not obj.lake:
            rows = publish(reader) if publish is not None else 0
            return Outcome(rows=rows, location=None, content_hash="", destination=destination)
        # The destination is loaded while the new lake file is written (the same batches, lake.base.keep_then)
        # and commits once that file is complete; the file replaces the old one after the load: a load or a
        # lake write that fails leaves both the table and the lake as they were.
        name = self._lake_name(obj, logical_date)
        if file is not None and not obj.date_parts and not obj.partition_by:
            written = self.lake.write_file(layer_of(self.project, obj), name, file, reader, then=publish)
        else:
            written = self.lake.write(layer_of(self.project, obj), name, reader, then=publish, partition_by=obj.partition_by)
        if rows is None:
            rows = written.published if written.published is not None else written.rows
        return Outcome(rows, written.location, written.content_hash, destination, self._pending(obj, written, logical_date))

    def _model(
        self, obj: ObjectSpec, inputs: Mapping[str, str | None]
    ) -> tuple[pa.RecordBatchReader | None, int | None, str | None]:
        """A model's output to store (None when it was materialised where it ran), its rows affected when
        not the rows stored, and the table it landed in (docs/models.md)."""
        from sluice.transforms.models import ModelEngine

        available = {name: location for name, location in inputs.items() if location is not None}
        engine = self.engine(obj.engine)
        if isinstance(engine, ModelEngine):
            result = engine.materialize(obj, available, object_label=label(obj))
            return result.reader, result.rows, result.target
        return engine.run(self._model_as_object(obj), available, object_label=label(obj)), None, None

    def _model_as_object(self, obj: ObjectSpec) -> ObjectSpec:
        """A table model for a plain engine (a ``sql:`` one: Spark...): the object with the model's SQL bound to
        its parents' views, in DuckDB's dialect, run by the model's engine."""
        from sluice.transforms.models import lake_names, rewrite

        model = obj.model
        assert model is not None
        if model.materialized != "table" or model.views:
            raise TerminalError(
                f"{label(obj)}: engine '{obj.engine}' runs table models over tables only; set materialized: table "
                "and read no view model"
            )
        sql = rewrite(model, model.full_sql, lake_names(self.project, model), write="duckdb", object_label=label(obj))
        return dataclasses.replace(obj, sql=sql, model=None, chosen_engine=obj.engine)

    def _read(self, obj: ObjectSpec, inputs: Mapping[str, str | None]) -> pa.RecordBatchReader | None:
        kind = obj.kind
        if kind == "noop":
            return None
        available = self._parent_locations(obj, inputs)
        return self.engine(obj.engine).run(obj, available, object_label=label(obj))

    def _write_by_engine(
        self,
        obj: ObjectSpec,
        load_key: str,
        inputs: Mapping[str, str | None],
        logical_date: str | None = None,
        in_load: InLoadChecks | None = None,
    ) -> Outcome:
        """An engine that writes the lake itself (Spark): it fills a staging place, committed here (or read
        by the destination and dropped, for an object that keeps no lake copy)."""
        engine = self.engine(obj.engine)
        available = self._parent_locations(obj, inputs)
        destination = obj.destination.table if obj.destination is not None else None
        publish = self._publisher(obj, load_key, in_load)
        staged = self.lake.stage(self.project.stage(obj.stage).layer, self._lake_name(obj, logical_date))
        try:
            engine.write(obj, available, staged, object_label=label(obj))
            if not obj.lake:
                rows = publish(staged.read()) if publish is not None else 0
                return Outcome(rows=rows, location=None, content_hash="", destination=destination)
            written = staged.commit(then=publish)
        finally:
            staged.discard()
        rows = written.published if written.published is not None else written.rows
        return Outcome(rows, written.location, written.content_hash, destination, self._pending(obj, written, logical_date))

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

    def _publisher(self, obj: ObjectSpec, load_key: str, in_load: InLoadChecks | None) -> Then | None:
        """What loads ``obj``'s destination from the batches written (recorded as load ``<load_key>:<object id>``)."""
        if obj.destination is None:
            return None
        return functools.partial(self._publish, obj, load_id=f"{load_key}:{obj.id}", in_load=in_load)

    def _publish(self, obj: ObjectSpec, data: pa.RecordBatchReader, load_id: str, in_load: InLoadChecks | None = None) -> int:
        from sluice.destinations.postgres import PostgresDestination

        assert obj.destination is not None
        spec = obj.destination
        destination = self.destinations.open(self.project.connections[spec.connection])
        try:
            args = (spec.table, data, spec.mode, spec.key, load_id, spec.schema_evolution)
            if in_load is not None and isinstance(destination, PostgresDestination):
                before_commit = functools.partial(in_load, destination.fetch)
                return int(destination.write(*args, options=spec, before_commit=before_commit, keep_load=in_load.keep_load))
            return int(destination.write(*args, options=spec))
        finally:
            destination.close()
