"""The coordinator: turns a plan into ``ObjectReady`` events as parents load, handles retries and skips.

It consumes ``sluice.events`` in a consumer group of its own run, applies each event to the run's
in-memory state, and after each batch publishes what follows (readies, skips), saves the changed
object states with its checkpoint, then commits the batch. A coordinator that crashes anywhere
in that cycle is restarted with ``resume``: states come back from the state store and uncommitted
events are delivered again; applying an event twice changes nothing. A message on ``sluice.events``
that is not an event goes to ``sluice.dead-letters`` with the reason (published before the batch
that held it is committed) and the run carries on.
"""

from __future__ import annotations

import heapq
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable

from sluice import events as ev
from sluice.bus import names
from sluice.bus.base import Bus, Consumer, Message
from sluice.bus.dead_letter import counted, dead_letter_record, describe_malformed
from sluice.connectors.base import SourceContext
from sluice.errors import RunNotFound, SluiceError
from sluice.graph.dag import Graph
from sluice.graph.plan import Plan, fingerprint, make_plan, project_graph
from sluice.lake.base import Lake
from sluice.observability import metrics
from sluice.project.model import ObjectSpec, Project
from sluice.runtime.summary import RunOptions, RunSummary
from sluice.state.base import FINAL_OBJECT_STATUSES, LatestOutput, ObjectState, RunRecord, StateStore
from sluice.transforms.python import input_fingerprint as python_input_fingerprint

log = logging.getLogger("sluice.coordinator")
Observer = Callable[[ev.Event], None]


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


class Coordinator:
    """Drives one run of a project over a bus, recording everything in a state store."""

    def __init__(
        self, project: Project, bus: Bus, state: StateStore, lake: Lake, options: RunOptions, observer: Observer | None = None
    ) -> None:
        self.project = project
        self.bus = bus
        self.state = state
        self.lake = lake
        self.options = options
        self.observer = observer
        self.graph: Graph = project_graph(project)
        self.source_context = SourceContext(project.root, project.connections)
        self.run_id = ""
        self.started_at = 0.0
        self.states: dict[int, ObjectState] = {}
        self.latest: dict[int, LatestOutput] = {}
        self._children: dict[int, list[int]] = {}
        self._waiting: dict[int, int] = {}
        self._retries: list[tuple[float, int, int]] = []
        self._dirty: dict[int, ObjectState] = {}
        self._outputs: list[LatestOutput] = []
        self._out: list[ev.Event] = []
        self._dead: list[tuple[str, tuple[str | None, bytes]]] = []  # (source topic, dead-letter record)
        self._remaining = 0
        self._cancel = threading.Event()
        self._recovering = False
        self._definition_hashes: dict[int, str] = {}

    # ----- starting -------------------------------------------------------------------------------

    def input_fingerprint(self, obj: ObjectSpec) -> str | None:
        """What the object reads besides its parents: a source's input, or a Python transform's project-local code."""
        if obj.python is not None:
            return python_input_fingerprint(obj.python, self.project.root)
        if obj.source is None:
            return ""
        from sluice.connectors.registry import open_source

        try:
            return open_source(obj.source, self.source_context).input_fingerprint()
        except SluiceError:
            return None

    def plan(self) -> Plan:
        self.latest = dict(self.state.latest_outputs(self.project.name))
        return make_plan(
            self.project,
            self.options.targets,
            latest=self.latest,
            force=self.options.force,
            input_fingerprint=self.input_fingerprint,
            output_exists=self.lake.exists,
        )

    def start(self) -> str:
        """Plan and begin a new run; returns its id."""
        plan = self.plan()
        self.run_id = new_run_id()
        self.started_at = time.time()
        first_offset = self.bus.end_offset(ev.EVENTS_TOPIC)
        self.states = {oid: ObjectState(oid, self.project.objects[oid].stage) for oid in plan.order}
        for oid, previous in plan.fresh.items():
            self._mark_fresh(self.states[oid], previous, save=False)
        record = RunRecord(
            self.run_id, self.project.name, "running", self.started_at, None, plan.targets, self.options.as_dict(), first_offset
        )
        self.state.create_run(record, list(self.states.values()))
        self.bus.seek(self._group(), ev.EVENTS_TOPIC, first_offset)
        self._emit(
            ev.RunStarted(
                run_id=self.run_id,
                project=self.project.name,
                targets=plan.targets,
                planned=plan.order,
                fresh=sorted(plan.fresh),
                force=self.options.force,
            )
        )
        for oid in plan.fresh:
            s = self.states[oid]
            self._emit(ev.ObjectSkipped(run_id=self.run_id, object_id=oid, stage=s.stage, reason=s.reason or "fresh", fresh=True))
        # RunStarted goes out before any work: a bus that publishes to several topics without a transaction
        # (Kafka) could otherwise let a worker's ObjectStarted reach the log ahead of it.
        self._flush([], None)
        self._index(plan.order)
        self._ready_all(oid for oid in plan.order if self.states[oid].status == "pending" and self._waiting[oid] == 0)
        self._flush([], None)
        metrics.ACTIVE_RUNS.inc()
        return self.run_id

    def resume(self, run_id: str | None = None) -> str:
        """Continue a run whose coordinator died; returns its id."""
        record = self.state.get_run(run_id) if run_id else self.state.unfinished_run(self.project.name)
        if record is None:
            raise RunNotFound(f"no unfinished run of project '{self.project.name}' to resume; start one with 'sluice run'")
        if record.status != "running":
            raise RunNotFound(f"run {record.run_id} is already {record.status}; nothing to resume")
        self.run_id = record.run_id
        self.started_at = record.started_at
        self.latest = dict(self.state.latest_outputs(self.project.name))
        self.states = self.state.object_states(record.run_id)
        missing = [oid for oid in self.states if oid not in self.project.objects]
        if missing:
            raise SluiceError(
                f"run {record.run_id} planned objects {missing[:5]} that the project no longer defines; start a new run instead"
            )
        self._recover(max(record.checkpoint + 1, record.first_offset))
        log.warning(
            "resuming run %s: %d of %d objects final",
            self.run_id,
            len(self.states) - self._remaining,
            len(self.states),
            extra={"run_id": self.run_id},
        )
        now = time.time()
        for s in self.states.values():
            if s.status == "retrying":
                heapq.heappush(self._retries, (now, s.object_id, s.attempt + 1))
        for s in list(self.states.values()):
            if s.status == "failed":
                self._skip_descendants(s.object_id)
        self._ready_all(oid for oid, s in self.states.items() if s.status == "pending" and self._waiting[oid] == 0)
        self._flush([], None)
        metrics.ACTIVE_RUNS.inc()
        return self.run_id

    def _recover(self, offset: int) -> None:
        """Replay the log after the checkpoint, learning what happened while no coordinator listened.

        Events are applied to the objects they name only; what follows from them (children ready,
        descendants skipped) is decided once the whole log is read, so nothing is published twice.
        Our own ``ObjectReady`` events tell which objects were already handed to workers.
        """
        end = self.bus.end_offset(ev.EVENTS_TOPIC)
        self._recovering = True
        try:
            while offset < end:
                messages = self.bus.read(ev.EVENTS_TOPIC, offset, 5000)
                if not messages:
                    break
                for message in messages:
                    if message.offset >= end:
                        break
                    self._apply_message(message)
                offset = messages[-1].offset + 1
        finally:
            self._recovering = False
        self.bus.seek(self._group(), ev.EVENTS_TOPIC, end)
        self._index(list(self.states))

    def _on_own_ready(self, event: ev.ObjectReady) -> None:
        s = self.states.get(event.object_id)
        if self._recovering and s is not None and s.status in ("pending", "retrying") and event.attempt >= s.attempt:
            s.status = "ready"
            s.attempt = event.attempt
            self._dirty[s.object_id] = s

    def _index(self, order: list[int]) -> None:
        planned = set(order)
        self._children = {oid: [c for c in self.graph.children[oid] if c in planned] for oid in order}
        self._waiting = {oid: sum(1 for p in self.project.objects[oid].parents if not self._done(p)) for oid in order}
        self._remaining = sum(1 for s in self.states.values() if s.status not in FINAL_OBJECT_STATUSES)

    def _done(self, oid: int) -> bool:
        """Loaded in this run, or skipped as fresh: its output is available to children."""
        s = self.states.get(oid)
        return s is not None and (s.status == "loaded" or (s.status == "skipped" and s.content_hash is not None))

    def _group(self) -> str:
        return names.coordinator_group(self.run_id)

    # ----- the loop -------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop handing out objects; those not final are skipped and the run ends as cancelled."""
        self._cancel.set()

    @property
    def cancelling(self) -> bool:
        return self._cancel.is_set()

    def loop(self, poll_max: int = 2000) -> RunSummary:
        """Process events until every planned object is final; publish RunFinished."""
        consumer = self.bus.consumer(self._group(), ev.EVENTS_TOPIC, exclusive=True)
        try:
            while self._remaining > 0 and not self._cancel.is_set():
                timeout = 0.05
                if self._retries:
                    timeout = max(0.0, min(timeout, self._retries[0][0] - time.time()))
                messages = consumer.poll(poll_max, timeout_s=timeout)
                for message in messages:
                    self._apply_message(message)
                self._due_retries()
                self._flush(messages, consumer)
            if self._cancel.is_set():
                self._cancel_rest()
            return self._finish()
        finally:
            consumer.close()

    def _apply_message(self, message: Message) -> None:
        try:
            event = ev.decode(message.value)
        except ValueError as exc:
            reason = describe_malformed(exc)
            log.error("dead-lettering a malformed event at partition %s offset %s: %s", message.partition, message.offset, reason)
            self._dead.append((message.topic, dead_letter_record(message, reason, self._group())))
            return
        if event.run_id != self.run_id:
            return
        metrics.child(metrics.EVENTS_CONSUMED, ev.event_type(event)).inc()
        if isinstance(event, ev.ObjectLoaded):
            self._on_loaded(event)
        elif isinstance(event, ev.ObjectFailed):
            self._on_failed(event)
        elif isinstance(event, ev.ObjectStarted):
            self._on_started(event)
        elif isinstance(event, ev.ObjectReady):
            self._on_own_ready(event)

    def _current(self, event: ev.ObjectEvent) -> ObjectState | None:
        """The object's state if ``event`` is news for it (not a duplicate or a stale attempt)."""
        s = self.states.get(event.object_id)
        if s is None or s.status in FINAL_OBJECT_STATUSES or event.attempt != s.attempt:
            return None
        return s

    def _on_started(self, event: ev.ObjectStarted) -> None:
        s = self._current(event)
        if s is None or s.status != "ready":
            return
        s.status = "running"
        s.started_at = event.ts.timestamp()
        self._changed(s, event)

    def _on_loaded(self, event: ev.ObjectLoaded) -> None:
        s = self._current(event)
        if s is None:
            return
        s.status = "loaded"
        s.rows = event.rows
        s.duration_s = event.duration_s
        s.location = event.location
        s.content_hash = event.content_hash or s.fingerprint or ""
        s.error = None
        s.finished_at = event.ts.timestamp()
        self._remaining -= 1
        self._changed(s, event)
        metrics.child(metrics.OBJECTS, s.stage, "loaded").inc()
        metrics.child(metrics.OBJECT_DURATION, s.stage).observe(event.duration_s)
        if s.fingerprint:
            self._outputs.append(
                LatestOutput(s.object_id, s.fingerprint, s.content_hash, s.location, s.rows, self.run_id, s.finished_at)
            )
        self._release_children(s.object_id)

    def _on_failed(self, event: ev.ObjectFailed) -> None:
        s = self._current(event)
        if s is None:
            return
        s.error = event.error
        s.duration_s = event.duration_s
        metrics.child(metrics.OBJECT_DURATION, s.stage).observe(event.duration_s)
        if event.retryable and s.attempt < self.project.retry.attempts:
            s.status = "retrying"
            due = time.time() + self.project.retry.delay_before(s.attempt + 1)
            heapq.heappush(self._retries, (due, s.object_id, s.attempt + 1))
            metrics.child(metrics.RETRIES, s.stage).inc()
            self._changed(s, event)
            return
        s.status = "failed"
        s.finished_at = event.ts.timestamp()
        self._remaining -= 1
        self._changed(s, event)
        metrics.child(metrics.OBJECTS, s.stage, "failed").inc()
        self._skip_descendants(s.object_id)

    def _release_children(self, oid: int) -> None:
        if self._recovering:
            return
        ready = []
        for child in self._children.get(oid, ()):
            self._waiting[child] -= 1
            if self._waiting[child] == 0 and self.states[child].status == "pending":
                ready.append(child)
        self._ready_all(ready)

    def _skip_descendants(self, oid: int) -> None:
        if self._recovering:
            return
        for child in sorted(self.graph.descendants([oid])):
            s = self.states.get(child)
            if s is None or s.status in FINAL_OBJECT_STATUSES:
                continue
            s.status = "skipped"
            s.reason = f"parent {oid} failed" if oid in self.project.objects[child].parents else f"ancestor {oid} failed"
            s.finished_at = time.time()
            self._remaining -= 1
            self._emit(ev.ObjectSkipped(run_id=self.run_id, object_id=child, stage=s.stage, reason=s.reason))
            metrics.child(metrics.OBJECTS, s.stage, "skipped").inc()

    def _ready_all(self, oids: Iterable[int]) -> None:
        for oid in oids:
            self._make_ready(oid, 1)

    def _make_ready(self, oid: int, attempt: int) -> None:
        obj = self.project.objects[oid]
        s = self.states[oid]
        if attempt == 1:
            parent_hashes = [self.states[p].content_hash or "" for p in obj.parents]
            source_fp = self.input_fingerprint(obj)
            s.fingerprint = None if source_fp is None else fingerprint(self._definition_hash(obj), source_fp, parent_hashes)
            previous = self.latest.get(oid)
            if self._is_fresh(s, previous):
                assert previous is not None
                self._mark_fresh(s, previous, save=True)
                self._remaining -= 1
                self._emit(
                    ev.ObjectSkipped(run_id=self.run_id, object_id=oid, stage=s.stage, reason=s.reason or "fresh", fresh=True)
                )
                self._release_children(oid)
                return
        s.status = "ready"
        s.attempt = attempt
        s.ready_at = time.time()
        inputs = {self.project.objects[p].name: self.states[p].location for p in obj.parents}
        delay = 0.0
        if self.options.simulate and obj.kind == "noop":
            delay = self.project.stage(obj.stage).delay_s * self.options.delay_scale
        ready = ev.ObjectReady(
            run_id=self.run_id,
            object_id=oid,
            stage=s.stage,
            attempt=attempt,
            inputs=inputs,
            delay_s=delay,
            fail=oid in self.options.fail,
        )
        self._emit(ready)

    def _definition_hash(self, obj: ObjectSpec) -> str:
        cached = self._definition_hashes.get(obj.id)
        if cached is None:
            cached = self._definition_hashes[obj.id] = obj.definition_hash()
        return cached

    def _is_fresh(self, s: ObjectState, previous: LatestOutput | None) -> bool:
        if self.options.force or previous is None or s.fingerprint is None or s.fingerprint != previous.fingerprint:
            return False
        return previous.location is None or self.lake.exists(previous.location)

    def _mark_fresh(self, s: ObjectState, previous: LatestOutput, *, save: bool) -> None:
        s.status = "skipped"
        s.reason = f"fresh: unchanged since run {previous.run_id}"
        s.fingerprint = previous.fingerprint
        s.content_hash = previous.content_hash
        s.location = previous.location
        s.rows = previous.rows
        s.finished_at = time.time()
        metrics.child(metrics.OBJECTS, s.stage, "skipped").inc()
        if save:
            self._dirty[s.object_id] = s

    def _due_retries(self) -> None:
        now = time.time()
        while self._retries and self._retries[0][0] <= now:
            _, oid, attempt = heapq.heappop(self._retries)
            if self.states[oid].status == "retrying":
                self._make_ready(oid, attempt)

    def _cancel_rest(self) -> None:
        for s in self.states.values():
            if s.status not in FINAL_OBJECT_STATUSES:
                s.status = "skipped"
                s.reason = "run cancelled"
                s.finished_at = time.time()
                self._emit(ev.ObjectSkipped(run_id=self.run_id, object_id=s.object_id, stage=s.stage, reason="run cancelled"))
        self._remaining = 0
        self._flush([], None)

    # ----- output ---------------------------------------------------------------------------------

    def _changed(self, s: ObjectState, event: ev.Event) -> None:
        self._dirty[s.object_id] = s
        if self.observer is not None:
            self.observer(event)

    def _emit(self, event: ev.Event) -> None:
        self._out.append(event)
        if isinstance(event, ev.ObjectEvent):
            self._dirty[event.object_id] = self.states[event.object_id]
        if self.observer is not None:
            self.observer(event)

    def _flush(self, consumed: list[Message], consumer: Consumer | None) -> None:
        """Publish what the batch caused, save changed states and the checkpoint, commit the batch."""
        if self._out or self._dead:
            out, self._out = self._out, []
            dead, self._dead = self._dead, []
            readies: dict[str, list[tuple[str | None, bytes]]] = {}
            log_batch: list[tuple[str | None, bytes]] = []
            for event in out:
                data = ev.encode(event)
                key = str(event.object_id) if isinstance(event, ev.ObjectEvent) else event.run_id
                log_batch.append((key, data))
                if isinstance(event, ev.ObjectReady):
                    readies.setdefault(ev.ready_topic(event.stage), []).append((key, data))
                metrics.child(metrics.EVENTS_PUBLISHED, ev.event_type(event)).inc()
            self.bus.publish_many([(ev.EVENTS_TOPIC, log_batch), *readies.items(), (ev.DEAD_LETTER_TOPIC, [r for _, r in dead])])
            counted([topic for topic, _ in dead])
        if self._dirty or consumed:
            dirty, self._dirty = list(self._dirty.values()), {}
            self.state.save(self.run_id, dirty, checkpoint=consumed[-1].offset if consumed else None)
        if self._outputs:
            outputs, self._outputs = self._outputs, []
            self.state.record_outputs(self.project.name, outputs)
        if consumed and consumer is not None:
            consumer.commit(consumed)

    def _finish(self) -> RunSummary:
        finished = time.time()
        duration = finished - self.started_at
        statuses = [s.status for s in self.states.values()]
        if self._cancel.is_set():
            status = "cancelled"
        elif "failed" in statuses:
            status = "failed"
        else:
            status = "succeeded"
        summary = RunSummary(self.run_id, status, duration, self.states)
        self._emit(ev.RunFinished(run_id=self.run_id, status=status, duration_s=duration, counts=summary.counts()))
        self._flush([], None)
        self.state.finish_run(self.run_id, status, finished)
        metrics.RUN_DURATION.observe(duration)
        metrics.child(metrics.RUNS, status).inc()
        metrics.ACTIVE_RUNS.dec()
        return summary
