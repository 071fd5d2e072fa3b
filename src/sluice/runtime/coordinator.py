"""The coordinator: the I/O shell around the run state machine (``runtime/run_state.py``).

It plans the run (``runtime/planning.py``), consumes ``sluice.events`` in a consumer group of its own
run, feeds each event of the run to the :class:`~sluice.runtime.run_state.RunState` and publishes what
the machine decides (``ObjectReady`` with the simulation fields, ``ObjectSkipped``) right after each
poll, so a child is handed out soon after its last parent's ``ObjectLoaded`` arrives. Changed object
states go with the checkpoint (the last event applied) to the writer thread (``runtime/saving.py``) at
most every ``SAVE_INTERVAL_S`` while events flow, and at once when they pause; it saves them, then
commits the events applied, while the loop goes on. A
coordinator that crashes anywhere in that cycle is restarted with ``resume``: states come back from
the state store, the log after the checkpoint is replayed (our own ``ObjectReady`` events say what
was already handed out) and applying an event twice changes nothing. A message on ``sluice.events``
that is not an event goes to ``sluice.dead-letters`` with the reason (published before the batch that
held it is committed) and the run carries on.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from sluice import events as ev
from sluice.bus import names
from sluice.bus.base import Bus, Consumer, Message
from sluice.bus.dead_letter import counted, dead_letter_record, describe_malformed
from sluice.connectors.base import SourceContext
from sluice.destinations.warm import WarmDestinations
from sluice.errors import RunNotFound, SluiceError
from sluice.graph.plan import Plan
from sluice.lake.base import Lake
from sluice.observability import metrics
from sluice.project.model import Project, parent_keys
from sluice.runtime.planning import Fingerprints, plan_run
from sluice.runtime.run_lease import RunInterrupted, interrupt_dead_runs, leased, resume_command, run_lease
from sluice.runtime.run_state import Decision, Ready, Retry, RunState, Skip
from sluice.runtime.saving import StateWriter
from sluice.runtime.summary import RunOptions, RunSummary
from sluice.scheduling.templating import render_project
from sluice.state.base import RESUMABLE_RUN_STATUSES, LatestOutput, ObjectState, RunRecord, StateStore
from sluice.state.lease import StoreLease

log = logging.getLogger("sluice.coordinator")
Observer = Callable[[ev.Event], None]
SAVE_INTERVAL_S = 1.0
"""While events flow, changed states go to the state writer (``runtime/saving.py``) at most this often (seconds);
when they pause (a poll finds nothing) they go at once. The log, not the state store, is the run's record (a
coordinator that dies replays it after the checkpoint), so saving less often under a flood of events costs only a
longer replay and states up to this old for readers of the store. Each save copies every changed state and writes
a row for it, and an object changes three times in a few milliseconds (ready, running, loaded): with 0.25 s the
coordinator of a 20,000-object burst of ``bench/kafka.py``'s DAG used about a fifth more CPU than with 1 s, CPU
that the loop handing out children competes for on two cores."""
POLL_MAX = 2000
"""At most this many events are applied between two publications of what they caused. Under a backlog
larger batches mean fewer bus writes for every thread of the process, which shortened the way from a
parent's ``ObjectLoaded`` to its child's ``ObjectReady`` on the bus more than batches of 500 did."""


def new_run_id(at: float | None = None) -> str:
    """``YYYYmmdd-HHMMSS-xxxxxxxx``: the local time ``at`` (epoch seconds, default now) and 32 random bits, as a
    scheduler starts a thousand runs in one second (with 24, two of them shared an id about once in thirty such
    seconds: bench/schedules.py).

    The time is read with :func:`time.time`: ``time.strftime`` without a time reads C's ``time(NULL)``, which glibc
    answers from the coarse clock, a few milliseconds behind; a scheduler stepping at its tick (``06:02:00.0007``)
    then made ids of the second before (``060159``)."""
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if at is None else at)) + "-" + secrets.token_hex(4)


class Coordinator:
    """Drives one run of a project over a bus, recording everything in a state store.

    ``states`` is the run's object states (empty until :meth:`start` or :meth:`resume`); readers in
    other threads may look at them while the loop runs.
    """

    def __init__(
        self,
        project: Project,
        bus: Bus,
        state: StateStore,
        lake: Lake,
        options: RunOptions,
        observer: Observer | None = None,
        *,
        destinations: WarmDestinations | None = None,
    ) -> None:
        self.project = project
        self.destinations = destinations
        """Destinations the run connected ahead: planning asks whether a table exists through them."""
        self._base_project = project  # self.project is it with {{ ds }} and friends rendered for the run
        self.bus = bus
        self.state = state
        self.lake = lake
        self.options = options
        self._logical_date = options.logical_date_text()  # a resumed run takes its own from its record
        self._calendar: dict[str, Any] = options.as_dict()  # what {{ ds }} and friends render from (a resumed run: its record's)
        self._load_key = options.load_key
        self.observer = observer
        self.source_context = SourceContext(project.root, project.connections)
        self.run_id = ""
        self.started_at = 0.0
        self.states: dict[int, ObjectState] = {}
        self.machine = RunState({}, {}, retry=project.retry)
        self._parents = {oid: obj.parents for oid, obj in project.objects.items()}
        self._delays = {stage.name: stage.delay_s * options.delay_scale for stage in project.stages}
        self._out: list[ev.Event] = []
        self._dead: list[tuple[str, tuple[str | None, bytes]]] = []  # (source topic, dead-letter record)
        self._outputs: list[LatestOutput] = []
        self._applied: list[Message] = []  # applied, their consequences published, not yet handed to the writer
        self._in_flight: list[Callable[[], None]] = []  # waiters of publications not yet handed to the writer
        self._writer: StateWriter | None = None
        self._consumer: Consumer | None = None  # opened before the first decisions go out, used by loop()
        self._saved_at = 0.0
        # Metrics of the events applied, kept until the next save (off the way from an event to what follows it):
        self._consumed: dict[type[ev.Event], int] = {}  # events consumed, by type
        self._counts: dict[tuple[Any, tuple[str, ...]], int] = {}  # (counter, labels): increments
        self._durations: list[tuple[str, float]] = []  # (stage, seconds) of attempts that ended
        self._cancel = threading.Event()
        self._plan: Plan | None = None  # prepare() -> begin()
        self._first_offset = 0
        self._ready_prefix = ("", b"")  # (run id, how its encoded ObjectReady events start)
        self._lease: StoreLease | None = None  # a run started by hand: held while this coordinator drives it
        self._driving = False  # begun or resumed: a run marked interrupted from now on stops the loop
        self._marked = threading.Event()  # marked interrupted, or its lease taken, by another process while paused
        self._dead_marked = False  # interrupt_dead() done

    # ----- starting -------------------------------------------------------------------------------

    def _render(self) -> None:
        """Render the objects' templates (``{{ ds }}``...) for the run's logical date into :attr:`project`: what the
        run plans and fingerprints (the rendered text is in the fingerprints)."""
        self.project = render_project(self._base_project, self._calendar)

    def _fingerprints(self, latest: Mapping[int, LatestOutput] | None = None) -> Fingerprints:
        found = dict(self.state.latest_outputs(self.project.name) if latest is None else latest)
        return Fingerprints(
            self.project,
            self.lake,
            latest=found,
            force=self.options.force,
            context=self.source_context,
            destinations=self.destinations,
        )

    def start(self, on_planned: Callable[[], None] | None = None) -> str:
        """Plan and begin a new run; returns its id (``YYYYmmdd-HHMMSS-xxxxxxxx``).

        Records the run, calls ``on_planned`` (the run is planned and recorded, nothing handed out yet), then
        publishes ``RunStarted`` and the first decisions (fresh skips, readies). A run started by hand (trigger
        ``manual``) first marks ``interrupted`` the project's runs started by hand whose coordinator is gone
        (``runtime/run_lease.py``: their leftover work is then skipped by workers), and holds its own lease.
        Raises ConfigError for unknown targets, BusError / StateError when a backend fails.
        """
        self.interrupt_dead()
        try:
            record = self.prepare()
            self.state.create_run(record, list(self.states.values()))
            if on_planned is not None:
                on_planned()
            self.begin()
        except BaseException:
            self.release_lease()
            raise
        return self.run_id

    def interrupt_dead(self) -> None:
        """For a run started by hand (trigger ``manual``), once: mark ``interrupted`` the project's runs started by
        hand whose coordinator is gone (``runtime/run_lease.py``). :meth:`start` does it; a caller starting workers
        in this process calls it before them, so that no worker takes a dead run's leftover work while that run is
        still ``running``. Raises StateError."""
        if self.options.trigger == "manual" and not self._dead_marked:
            interrupt_dead_runs(self.state, self.project.name, self.project.root)
            self._dead_marked = True

    def prepare(self, latest: Mapping[int, LatestOutput] | None = None, run_id: str | None = None) -> RunRecord:
        """The first half of :meth:`start`: plan the run and return its record, not yet saved (``latest``: the
        project's last outputs, when the caller read them for several runs at once; ``run_id``: the id to give the
        run, default a new one). Then save the record (``StateStore.create_runs`` for many) and call :meth:`begin`;
        ``scheduling/starter.py`` does so for a tick's runs together."""
        self._render()
        fingerprints = self._fingerprints(latest)
        plan = plan_run(self.project, self.options, fingerprints)
        fingerprints.hash_definitions(plan.to_run)
        self.run_id = run_id or new_run_id()
        if self.options.trigger == "manual":  # before the run is recorded: never seen running without its lease
            self._hold_lease(self.run_id)
        self.started_at = time.time()
        stages = {oid: self.project.objects[oid].stage for oid in plan.order}
        # one metadata request for the topics the run publishes to, not a round trip at each stage's first hand-out
        self.bus.prepare_topics([ev.EVENTS_TOPIC, *(ev.ready_topic(stage) for stage in sorted(set(stages.values())))])
        first_offset = self.bus.end_offset(ev.EVENTS_TOPIC)
        self.machine = RunState.planned(
            plan.order,
            stages,
            self._parents,
            plan.fresh,
            retry=self.project.retry,
            freshness=fingerprints,
            now=self.started_at,
        )
        self.states = self.machine.states
        self._plan = plan
        self._first_offset = first_offset
        return RunRecord(
            self.run_id, self.project.name, "running", self.started_at, None, plan.targets, self.options.as_dict(), first_offset
        )

    def begin(self) -> None:
        """The second half of :meth:`start`, once the record of :meth:`prepare` is saved: publish ``RunStarted``
        and the first decisions."""
        plan = self._plan
        assert plan is not None, "prepare() first"
        # The state writer (a thread) starts with the loop: a scheduler starting a thousand runs at one tick
        # publishes their RunStarted first (bench/schedules.py).
        self.bus.seek(self._group(), ev.EVENTS_TOPIC, self._first_offset)
        self._open_consumer()
        self._emit(
            ev.RunStarted(
                run_id=self.run_id,
                project=self.project.name,
                targets=plan.targets,
                planned=plan.order,
                fresh=sorted(plan.fresh),
                force=self.options.force,
                logical_date=self.options.logical_date_text(),
                trigger=self.options.trigger,
                schedule=self.options.schedule,
            )
        )
        # RunStarted goes out before any work: a bus that publishes to several topics without a transaction
        # (Kafka) could otherwise let a worker's ObjectStarted reach the log ahead of it. A bus whose
        # publish_many is one ordered transaction (the embedded log) takes it with the first decisions.
        if not self.bus.ordered_publish_many:
            self._publish(wait=True)
        self._decide(self.machine.start(time.time()))
        self._publish()
        # The first states go to the writer with the loop's first save (at its first pause, or after
        # SAVE_INTERVAL_S): until saved, the log's ObjectReady events say what was handed out.
        self._saved_at = time.time()
        self._driving = True
        metrics.ACTIVE_RUNS.inc()

    def resume(self, run_id: str | None = None) -> str:
        """Continue a run whose coordinator died (``run_id``, or the project's unfinished run); returns its id.

        A run started by hand is continued under its lease (``runtime/run_lease.py``), taken before the run is read.
        An ``interrupted`` run (workers dropped the work it had handed out) is ``running`` again once the objects it
        had handed out are recorded with their next attempt, which is then handed out (``RunState.rehand``).
        Raises RunNotFound when there is no such run or it is already finished, RunBusy when another live process
        drives it, SluiceError when the project no longer defines objects the run planned.
        """
        record = self.state.get_run(run_id) if run_id else self.state.unfinished_run(self.project.name)
        if record is None:
            raise RunNotFound(
                f"no unfinished run of project '{self.project.name}' to resume; start one with 'sluice run', or resume "
                "an interrupted one with 'sluice run PATH --resume --run ID' (sluice runs PATH --status interrupted)"
            )
        if record.status not in RESUMABLE_RUN_STATUSES:
            raise RunNotFound(f"run {record.run_id} is already {record.status}; nothing to resume")
        if leased(record.options):
            self._hold_lease(record.run_id)
        try:
            return self._resume(self.state.get_run(record.run_id))  # read again under its lease
        except BaseException:
            self.release_lease()
            raise

    def _resume(self, record: RunRecord) -> str:
        if record.status not in RESUMABLE_RUN_STATUSES:
            raise RunNotFound(f"run {record.run_id} is already {record.status}; nothing to resume")
        interrupted = record.status == "interrupted"
        self.run_id = record.run_id
        self.started_at = record.started_at
        self.options = self.options.with_recorded(record.options)  # --force, --simulate, --fail: as it was started
        self._delays = {stage.name: stage.delay_s * self.options.delay_scale for stage in self.project.stages}
        logical_date = record.options.get("logical_date")
        self._logical_date = logical_date if isinstance(logical_date, str) else None
        self._calendar = dict(record.options)
        load_key = record.options.get("load_key")
        self._load_key = load_key if isinstance(load_key, str) else None
        self._render()
        states = self.state.object_states(record.run_id)
        missing = [oid for oid in states if oid not in self.project.objects]
        if missing:
            raise SluiceError(
                f"run {record.run_id} planned objects {missing[:5]} that the project no longer defines; start a new run instead"
            )
        self.machine = RunState(states, self._parents, retry=self.project.retry, freshness=self._fingerprints())
        self.states = self.machine.states
        self._writer = StateWriter(self.state, self.run_id, self.project.name)
        self._recover(max(record.checkpoint + 1, record.first_offset))
        self._open_consumer()
        now = time.time()
        # An interrupted run's handed-out work was dropped: handed out again as the next attempt (before resume()
        # hands out the objects whose parents are in, as attempt 1)
        decisions = self.machine.rehand(now) if interrupted else []
        decisions += self.machine.resume(now)
        log.warning(
            "resuming %srun %s: %d of %d objects final",
            "interrupted " if interrupted else "",
            self.run_id,
            len(self.states) - self.machine.remaining,
            len(self.states),
            extra={"run_id": self.run_id},
        )
        taken = sorted(oid for oid, s in self.states.items() if s.status == "running")
        if taken:
            # Not handed out again (a worker still going finishes them): their ObjectReady, still on the bus, goes to
            # another worker when the bus gives up the one that had it, and runs as the same attempt
            shown = ", ".join(map(str, taken[:10])) + (f" and {len(taken) - 10} more" if len(taken) > 10 else "")
            log.warning(
                "run %s: object(s) %s had been started by a worker: one still going finishes them, else they run again "
                "(same attempt) once the bus gives their message to another worker: at once if that worker was a process "
                "of this host (embedded bus), else when its lease ends (at most %.0f s, lease_s; Kafka: its session, 10 s)",
                self.run_id,
                shown,
                self.project.lease_s,
                extra={"run_id": self.run_id},
            )
        self._decide(decisions)
        if interrupted:
            # The new attempts are recorded before the run is running again: a worker then given an earlier
            # attempt's message finds it superseded (RunActivity.settled)
            self._save(None)
            self._writer.flush()
            if not self.state.set_run_status(self.run_id, "running", None, expected="interrupted"):
                raise RunNotFound(f"run {self.run_id} changed while it was being resumed; run 'sluice runs PATH' and try again")
        self._publish()
        self._save(None)
        self._writer.flush()
        self._driving = True
        metrics.ACTIVE_RUNS.inc()
        return self.run_id

    def _hold_lease(self, run_id: str) -> None:
        """Take the run's lease (raises RunBusy when another live process holds it) and keep it renewed."""
        lease = run_lease(self.state, self.project.name, run_id, on_renewed=self._check_marked, on_lost=self._marked.set)
        lease.hold()
        self._lease = lease

    def _check_marked(self) -> None:
        """After each renewal of the lease: a run marked ``interrupted`` meanwhile (this process paused longer than
        the lease, another took it as dead) is no longer driven here; workers skip its work, so the loop stops."""
        if self._driving and self.state.get_run(self.run_id).status == "interrupted":
            self._marked.set()

    def release_lease(self) -> None:
        """Give up the run's lease, if this coordinator holds one (the run's loop does at its end; idempotent)."""
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()

    def _recover(self, offset: int) -> None:
        """Replay the log after the checkpoint into the machine (each event to the object it names only)."""
        end = self.bus.end_offset(ev.EVENTS_TOPIC)
        while offset < end:
            messages = self.bus.read(ev.EVENTS_TOPIC, offset, 5000)
            if not messages:
                break
            for message in messages:
                if message.offset >= end:
                    break
                event = self._decode(message)
                if event is not None and self.machine.replay(event) and self.observer is not None:
                    self.observer(event)
            offset = messages[-1].offset + 1
        self.bus.seek(self._group(), ev.EVENTS_TOPIC, end)

    def _group(self) -> str:
        return names.coordinator_group(self.run_id)

    def _open_consumer(self) -> None:
        """Open the run's consumer of ``sluice.events`` (where the group was sought to) before anything is handed
        out: on Kafka it takes tens of milliseconds to find the group's coordinator and start fetching, which
        the first objects' outcomes would otherwise wait for."""
        self._consumer = self.bus.consumer(self._group(), ev.EVENTS_TOPIC, exclusive=True)

    # ----- the loop -------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop handing out objects; those not final are skipped and the run ends as cancelled."""
        self._cancel.set()

    @property
    def cancelling(self) -> bool:
        return self._cancel.is_set()

    def loop(self, poll_max: int = POLL_MAX) -> RunSummary:
        """Process events until every planned object is final (or the run is cancelled); publish ``RunFinished``.

        ``poll_max`` bounds the events applied between two publications. Returns the run's summary; raises
        BusError / StateError when a backend fails (the run can then be resumed), RunInterrupted when another process
        marked the run ``interrupted`` while this one was paused (``runtime/run_lease.py``; resume it).
        """
        if self._consumer is None:
            self._open_consumer()
        if self._writer is None:
            self._writer = StateWriter(self.state, self.run_id, self.project.name)
        consumer, self._consumer = self._consumer, None
        assert consumer is not None
        machine = self.machine
        try:
            while not machine.finished and not self._cancel.is_set() and not self._marked.is_set():
                timeout = 0.05
                due = machine.next_due
                if due is not None:
                    timeout = max(0.0, min(timeout, due - time.time()))
                messages = consumer.poll(poll_max, timeout_s=timeout)
                now = time.time()
                self._apply_messages(messages, now)
                if due is not None and due <= now:
                    self._decide(machine.due(now))
                self._publish()
                self._applied.extend(messages)
                if not messages or now - self._saved_at >= SAVE_INTERVAL_S:
                    self._save(consumer)
            if self._marked.is_set() and not machine.finished:
                metrics.ACTIVE_RUNS.dec()
                raise RunInterrupted(
                    f"run {self.run_id} was marked interrupted (or taken over) by another process while this coordinator "
                    f"was paused and did not renew its lease; see 'sluice runs PATH', and resume it if no other process "
                    f"does: {resume_command(self.project.root, self.run_id)}"
                )
            if self._cancel.is_set():
                self._decide(machine.cancel(time.time()), counted=False)
            return self._finish(consumer)
        finally:
            if self._writer is not None:
                self._writer.close()
            consumer.close()
            self.release_lease()

    def _decode(self, message: Message) -> ev.AnyEvent | None:
        """The event of this run in ``message``; None for other runs' events and for malformed messages (dead-lettered)."""
        try:
            event = ev.decode(message.value)
        except ValueError as exc:
            self._dead_letter(message, exc)
            return None
        if event.run_id != self.run_id:
            return None
        kind = type(event)
        self._consumed[kind] = self._consumed.get(kind, 0) + 1
        return event

    def _dead_letter(self, message: Message, exc: ValueError) -> None:
        reason = describe_malformed(exc)
        log.error("dead-lettering a malformed event at partition %s offset %s: %s", message.partition, message.offset, reason)
        self._dead.append((message.topic, dead_letter_record(message, reason, self._group())))

    def _apply_messages(self, messages: list[Message], now: float) -> None:
        """Decode and apply a poll's messages, in order (the per-event path: names bound once per batch).

        Our own events are published with ``own_group`` (``_publish``): the embedded log does not hand them back.
        A bus that does (Kafka) delivers our ``ObjectReady`` events too, one for each object: counted, and known
        by the first bytes the encoder gives every ``ObjectReady`` of this run (type, version, run id) without
        decoding them, as the machine has nothing to do with them.
        """
        decode = ev.decode
        run_id = self.run_id
        consumed = self._consumed
        apply = self.machine.apply
        observer = self.observer
        started, ready, checked = ev.ObjectStarted, ev.ObjectReady, ev.CheckFinished
        own_ready = self._own_ready_prefix()
        readies = 0
        for message in messages:
            if message.value.startswith(own_ready):
                readies += 1
                continue
            try:
                event = decode(message.value)
            except ValueError as exc:
                self._dead_letter(message, exc)
                continue
            if event.run_id != run_id:
                continue
            kind = type(event)
            consumed[kind] = consumed.get(kind, 0) + 1
            if kind is ready:
                continue
            if kind is checked:  # the machine ignores it (docs/checks.md); the observer shows it
                if observer is not None:
                    observer(event)
                continue
            decisions = apply(event, now)
            if decisions is None:
                continue
            if kind is started:  # decides nothing: only the observer is told
                if observer is not None:
                    observer(event)
                continue
            self._applied_event(event, decisions)
        if readies:
            consumed[ready] = consumed.get(ready, 0) + readies

    def _own_ready_prefix(self) -> bytes:
        """How every encoded ``ObjectReady`` of this run starts: ``{"type":"ObjectReady","v":1,"run_id":"<id>",``."""
        run_id, prefix = self._ready_prefix
        if run_id != self.run_id:
            encoded = ev.encode(ev.ObjectReady(run_id=self.run_id, object_id=0, stage="", attempt=0))
            prefix = encoded[: encoded.index(b'"ts":')]
            self._ready_prefix = (self.run_id, prefix)
        return prefix

    def _applied_event(self, event: ev.AnyEvent, decisions: list[Decision]) -> None:
        """What follows from an event the machine took: observer, metrics, latest output, decisions."""
        if self.observer is not None:
            self.observer(event)
        if isinstance(event, (ev.ObjectLoaded, ev.ObjectFailed)):
            s = self.states[event.object_id]
            self._durations.append((s.stage, event.duration_s))
            if s.status in ("loaded", "failed"):
                self._count(metrics.OBJECTS, s.stage, s.status)
            if s.status == "loaded" and s.fingerprint:
                assert s.content_hash is not None and s.finished_at is not None and s.rows is not None
                self._outputs.append(
                    LatestOutput(s.object_id, s.fingerprint, s.content_hash, s.location, s.rows, self.run_id, s.finished_at)
                )
        if decisions:
            self._decide(decisions)

    def _decide(self, decisions: list[Decision], *, counted: bool = True) -> None:
        """Turn the machine's decisions into events to publish (``counted``: in ``sluice_objects_total``)."""
        for decision in decisions:
            if isinstance(decision, Ready):
                self._emit(self._ready_event(decision))
                continue
            stage = self.states[decision.object_id].stage
            if isinstance(decision, Skip):
                self._emit(
                    ev.ObjectSkipped(
                        run_id=self.run_id,
                        object_id=decision.object_id,
                        stage=stage,
                        reason=decision.reason,
                        fresh=decision.fresh,
                    )
                )
                if counted:
                    self._count(metrics.OBJECTS, stage, "skipped")
            elif isinstance(decision, Retry):
                self._count(metrics.RETRIES, stage)

    def _count(self, counter: Any, *labels: str) -> None:
        key = (counter, labels)
        self._counts[key] = self._counts.get(key, 0) + 1

    def _ready_event(self, ready: Ready) -> ev.ObjectReady:
        """The ``ObjectReady`` for a decision: parents' lake locations, and ``--simulate`` / ``--fail`` fields."""
        obj = self.project.objects[ready.object_id]
        states = self.states
        inputs = {key: states[p].location for p, key in parent_keys(self.project, obj).items()}
        delay = self._delays[obj.stage] if self.options.simulate and obj.kind == "noop" else 0.0
        return ev.ObjectReady(
            run_id=self.run_id,
            object_id=ready.object_id,
            stage=obj.stage,
            attempt=ready.attempt,
            inputs=inputs,
            delay_s=delay,
            fail=ready.object_id in self.options.fail,
            logical_date=self._logical_date,
            load_key=self._load_key,
        )

    # ----- output ---------------------------------------------------------------------------------

    def _emit(self, event: ev.Event) -> None:
        self._out.append(event)
        if self.observer is not None:
            self.observer(event)

    def _publish(self, *, wait: bool = False) -> None:
        """Publish the events decided so far (each encoded once) and the dead letters, in one bus write.

        Does not wait for the bus to acknowledge it (unless ``wait``): the loop goes on applying events while it
        does, and the writer thread waits for it before it saves or commits what follows (``_save``)."""
        if not self._out and not self._dead:
            return
        out, self._out = self._out, []
        dead, self._dead = self._dead, []
        readies: dict[str, list[tuple[str | None, bytes]]] = {}  # by stage
        log_batch: list[tuple[str | None, bytes]] = []
        published: dict[type[ev.Event], int] = {}
        encode = ev.encode
        for event in out:
            data = encode(event)
            kind = type(event)
            published[kind] = published.get(kind, 0) + 1
            if isinstance(event, ev.ObjectEvent):
                key = str(event.object_id)
                if kind is ev.ObjectReady:
                    stage_readies = readies.get(event.stage)
                    if stage_readies is None:
                        stage_readies = readies[event.stage] = []
                    stage_readies.append((key, data))
            else:
                key = event.run_id
            log_batch.append((key, data))
        written = self.bus.publish_many_nowait(
            [  # the work first: on Kafka its messages are then in the producer's first request, not after the log's
                *((ev.ready_topic(stage), batch) for stage, batch in readies.items()),
                (ev.EVENTS_TOPIC, log_batch),
                (ev.DEAD_LETTER_TOPIC, [r for _, r in dead]),
            ],
            own_group=self._group(),
        )
        if wait:
            written()
        else:
            self._in_flight.append(written)
        counted([topic for topic, _ in dead])
        for kind, n in published.items():
            metrics.child(metrics.EVENTS_PUBLISHED, kind.__name__).inc(n)

    def _save(self, consumer: Consumer | None) -> None:
        """Hand the changed states, the checkpoint and the new latest outputs to the writer, which saves them and
        then commits the events applied (call after publishing what those events caused)."""
        assert self._writer is not None
        self._saved_at = time.time()
        applied, self._applied = self._applied, []
        outputs, self._outputs = self._outputs, []
        published, self._in_flight = self._in_flight, []
        self._writer.submit(self.machine.take_changed(), applied, consumer, outputs, published)
        self._update_metrics()

    def _update_metrics(self) -> None:
        consumed, self._consumed = self._consumed, {}
        for kind, n in consumed.items():
            metrics.child(metrics.EVENTS_CONSUMED, kind.__name__).inc(n)
        counts, self._counts = self._counts, {}
        for (counter, labels), n in counts.items():
            metrics.child(counter, *labels).inc(n)
        durations, self._durations = self._durations, []
        for stage, seconds in durations:
            metrics.child(metrics.OBJECT_DURATION, stage).observe(seconds)

    def _finish(self, consumer: Consumer) -> RunSummary:
        finished = time.time()
        duration = finished - self.started_at
        status = self.machine.status() or "cancelled"
        summary = RunSummary(self.run_id, status, duration, self.states)
        failed = {
            oid: ((s.error or "failed").strip().splitlines() or ["failed"])[0][: ev.FAILED_ERROR_CHARS]
            if index < ev.FAILED_ERRORS
            else ""
            for index, (oid, s) in enumerate(sorted((oid, s) for oid, s in self.states.items() if s.status == "failed"))
        }
        # Published before the states are saved (the writer waits for the bus): the event carries what a reader of it
        # needs, the failed objects and their errors, so the alert service never depends on the save having happened.
        self._emit(ev.RunFinished(run_id=self.run_id, status=status, duration_s=duration, counts=summary.counts(), failed=failed))
        self._publish()
        self._save(consumer)
        assert self._writer is not None
        self._writer.flush()
        self.state.finish_run(self.run_id, status, finished)
        metrics.RUN_DURATION.observe(duration)
        metrics.child(metrics.RUNS, status).inc()
        metrics.ACTIVE_RUNS.dec()
        return summary
