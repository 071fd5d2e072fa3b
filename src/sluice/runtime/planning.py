"""Planning a run against the state store and the lake, and the fingerprints that decide freshness.

``graph/plan.py`` stays free of I/O; this module gives it what it needs from outside: the last
successful outputs (state store), whether their lake files still exist, and each object's *input
fingerprint*, which the object's own source or engine computes (``Source.input_fingerprint()``,
``Engine.input_fingerprint()``). Reading an input fingerprint may be expensive (a
content hash of a large file), so :class:`Fingerprints` computes each object's at most once per run:
at planning time for objects whose parents are all fresh, otherwise when the object becomes ready.

>>> fingerprints = Fingerprints(project, lake, latest=state.latest_outputs(project.name))  # doctest: +SKIP
>>> plan = plan_run(project, RunOptions(), fingerprints)                                           # doctest: +SKIP
>>> fingerprints(2001, ["<parent content hash>"])  # what the run state machine asks               # doctest: +SKIP
Freshness(fingerprint='9f0c...', fresh=None)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from sluice.connectors.base import SourceContext
from sluice.destinations.warm import WarmDestinations
from sluice.errors import ConfigError, SluiceError
from sluice.graph.plan import Plan, fingerprint, make_plan
from sluice.lake.base import Lake
from sluice.project.model import ObjectSpec, Project, layer_of
from sluice.runtime.run_state import STREAM_RUN, Freshness
from sluice.runtime.summary import RunOptions
from sluice.state.base import LatestOutput
from sluice.transforms.engines import Engine, open_engine

STREAMED = "streamed"
"""The input fingerprint of every streaming object (what changes is its content hash, batch after batch)."""


def source_fingerprint(obj: ObjectSpec, context: SourceContext) -> str | None:
    """What a source object reads, as its source describes it (``Source.input_fingerprint()``).

    ``""`` for an object without a source; None when the input cannot be described (the object is then
    never fresh); a source that cannot be opened gives None too.
    """
    if obj.source is None:
        return ""
    from sluice.connectors.registry import open_source

    try:
        return open_source(obj.source, context).input_fingerprint()
    except SluiceError:
        return None


class Fingerprints:
    """One run's fingerprints and freshness decisions; the freshness callable the run state machine is given.

    ``output_exists(location) -> bool`` asks the lake; ``latest`` maps object ids to their last successful
    outputs; with ``force`` nothing is fresh. Input fingerprints are cached: each object's is read once.
    """

    def __init__(
        self,
        project: Project,
        lake: Lake,
        *,
        latest: Mapping[int, LatestOutput] | None = None,
        force: bool = False,
        context: SourceContext | None = None,
        destinations: WarmDestinations | None = None,
    ) -> None:
        self.project = project
        self.destinations = destinations
        """Where :meth:`published` takes a destination (one the run connected ahead) and hands it back; None: it opens
        and closes its own."""
        self.lake = lake
        self.output_exists: Callable[[str], bool] = lake.exists
        self._engines: dict[str, Engine] = {}
        self.latest: Mapping[int, LatestOutput] = latest or {}
        self.force = force
        self.context = context or SourceContext(project.root, project.connections)
        self._inputs: dict[int, str | None] = {}
        self._definitions: dict[int, str] = {}
        self._tables: dict[tuple[str, str], bool] = {}

    def input_fingerprint(self, obj: ObjectSpec) -> str | None:
        """``input_fingerprint(obj)``, computed on the first call for ``obj`` and remembered."""
        inputs = self._inputs
        if obj.id in inputs:  # not try/except: the first call for each object would raise
            return inputs[obj.id]
        value = inputs[obj.id] = self._read_input_fingerprint(obj)
        return value

    def _read_input_fingerprint(self, obj: ObjectSpec) -> str | None:
        """A source object's from its source; a transform's from its engine (``Engine.input_fingerprint``); a
        streaming object's is constant (its content hash, which changes with each micro-batch, makes its children's)."""
        if obj.streaming is not None:
            return STREAMED
        if obj.kind in ("source", "noop"):
            return source_fingerprint(obj, self.context)
        engine = self._engines.get(obj.engine)
        if engine is None:
            try:
                engine = self._engines[obj.engine] = open_engine(obj.engine, self.project, self.lake)
            except SluiceError:
                return None
        return engine.input_fingerprint(obj)

    def published(self, obj: ObjectSpec) -> bool:
        """Whether the object's destination table is still there (True when it has none).

        A table dropped by hand since the last success makes the object run again. Each table is asked
        about once per run, over a connection opened and closed for it (a DuckDB file is not kept open
        while workers write to it); a database that cannot be asked counts as "not there".
        """
        spec = obj.destination
        if spec is None:
            return True
        key = (spec.connection, spec.table)
        found = self._tables.get(key)
        if found is None:
            found = self._tables[key] = self._table_exists(spec.connection, spec.table)
        return found

    def _table_exists(self, connection_name: str, table: str) -> bool:
        from sluice.destinations.registry import open_destination

        connection = self.project.connections.get(connection_name)
        if connection is None:
            return False
        warm = self.destinations
        try:
            destination = warm.open(connection) if warm is not None else open_destination(connection, self.project.root)
        except SluiceError:
            return False
        try:
            found = destination.has_table(table)
        except BaseException:
            destination.close()
            raise
        if warm is not None:
            warm.give_back(destination)  # the object's load, if it runs, takes it
        else:
            destination.close()
        return found

    def hash_definitions(self, object_ids: Iterable[int]) -> None:
        """Compute and keep the definition hashes of ``object_ids`` now (a few microseconds each), so that the
        fingerprint asked when one of them becomes ready, between its last parent's ``ObjectLoaded`` and its
        ``ObjectReady``, does not compute it (the coordinator calls this while it plans)."""
        definitions, objects = self._definitions, self.project.objects
        for object_id in object_ids:
            if object_id not in definitions:
                definitions[object_id] = objects[object_id].definition_hash()

    def fingerprint(self, object_id: int, parent_hashes: Sequence[str]) -> str | None:
        """The object's fingerprint given its parents' content hashes; None when its input is unknown."""
        obj = self.project.objects[object_id]
        source_fp = self.input_fingerprint(obj)
        if source_fp is None:
            return None
        definition = self._definitions.get(object_id)
        if definition is None:
            definition = self._definitions[object_id] = obj.definition_hash()
        return fingerprint(definition, source_fp, parent_hashes)

    def __call__(self, object_id: int, parent_hashes: Sequence[str]) -> Freshness:
        """The object's fingerprint, and its last output when that output is fresh (same fingerprint, still in the lake)."""
        fp = self.fingerprint(object_id, parent_hashes)
        previous = None if self.force else self.latest.get(object_id)
        if previous is None or fp is None or fp != previous.fingerprint:
            return Freshness(fp, None)
        if previous.location is not None and not self.output_exists(previous.location):
            return Freshness(fp, None)
        if not self.published(self.project.objects[object_id]):
            return Freshness(fp, None)
        return Freshness(fp, previous)


def plan_run(project: Project, options: RunOptions, fingerprints: Fingerprints) -> Plan:
    """The plan of a run of ``options.targets`` (``graph.plan.make_plan``), fresh objects decided with ``fingerprints``.

    Streaming objects are never run by a run: they are fresh parents whose output is what they have committed so
    far (:meth:`Lake.appended`). Raises ConfigError for unknown targets, and for a streaming object the plan
    needs that has committed nothing yet (a run cannot read it; :func:`plan_streams` plans without refusing).
    """
    plan, unstreamed = plan_streams(project, options, fingerprints)
    if unstreamed:
        raise ConfigError(
            f"{not_streamed_yet(project, unstreamed[0])}, and the run reads it; start it first with: "
            f"{stream_command(project, unstreamed[0])}"
        )
    return plan


def plan_streams(project: Project, options: RunOptions, fingerprints: Fingerprints) -> tuple[Plan, list[int]]:
    """The plan of :func:`plan_run` without refusing it, and the planned streaming objects (ids, in plan order) that
    have committed no micro-batch yet: they stay in ``plan.order`` and are neither fresh nor to be run by a run
    (``sluice stream`` runs them), so a run of this plan would be refused until each has committed one. What
    ``sluice plan`` shows. Raises ConfigError for unknown targets."""
    streamed = streamed_outputs(project, fingerprints)
    fingerprints.latest = {**fingerprints.latest, **streamed}
    plan = make_plan(
        project,
        options.targets,
        latest=fingerprints.latest,
        force=options.force,
        input_fingerprint=fingerprints.input_fingerprint,
        output_exists=fingerprints.output_exists,
        published=fingerprints.published,
    )
    unstreamed: list[int] = []
    for object_id in plan.order:
        if project.objects[object_id].streaming is None:
            continue
        if object_id in streamed:
            plan.fresh[object_id] = streamed[object_id]
        else:
            unstreamed.append(object_id)
    return plan, unstreamed


def not_streamed_yet(project: Project, object_id: int) -> str:
    """``streaming object 1001 (events) has committed no micro-batch yet``: the start of every message about one."""
    return f"streaming object {object_id} ({project.objects[object_id].name}) has committed no micro-batch yet"


def stream_command(project: Project, object_id: int) -> str:
    """The command that runs streaming object ``object_id`` of ``project``: ``sluice stream <file> --object <id>``."""
    return f"sluice stream {project.source_file} --object {object_id}"


def streamed_outputs(project: Project, fingerprints: Fingerprints) -> dict[int, LatestOutput]:
    """What each streaming object has committed so far, as the last output of a fresh object."""
    found: dict[int, LatestOutput] = {}
    for obj in project.objects.values():
        if obj.streaming is None:
            continue
        written = fingerprints.lake.appended(layer_of(project, obj), obj.name)
        if written is not None:
            fp = fingerprint(obj.definition_hash(), STREAMED, ())
            output = (written.content_hash, written.location, written.rows)
            found[obj.id] = LatestOutput(obj.id, fp, *output, STREAM_RUN, time.time())
    return found
