"""A stage worker: consumes ``ObjectReady`` for one stage, does the work, publishes the outcome.

Threads inside one worker:

* the *dispatcher* polls the stage's work queue and hands objects to the executor threads (objects
  with no work and no simulated delay complete right there: there is nothing to run);
* ``concurrency`` *executor* threads run objects;
* the *outbox* publishes ``ObjectStarted`` / ``ObjectLoaded`` / ``ObjectFailed`` in batches and
  commits a work message only after its outcome is on the bus (at-least-once);
* the *heartbeat* renews the leases of messages held, so long objects are not redelivered.

A worker that dies loses nothing: its uncommitted messages come back to another worker. A worker
that is stopped finishes the objects it started (for up to ``stop_grace_s``), publishes and commits
their outcomes, leaves the rest uncommitted for the other workers and leaves the group. A message
that is not an ``ObjectReady`` for an object of this stage goes to ``sluice.dead-letters`` with the
reason, then is committed. A redelivered message whose object the state store already records as
final for that run and attempt (its first worker finished it but could not commit) is committed
without running the object again.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import socket
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Protocol

from sluice import events as ev
from sluice.bus import names
from sluice.bus.base import Bus, Consumer, Message
from sluice.bus.dead_letter import describe_malformed
from sluice.checks.run import LoadRefused
from sluice.errors import SluiceError, is_transient
from sluice.observability import metrics
from sluice.project.model import ObjectSpec, Project, StageSpec
from sluice.runtime.execute import ObjectExecutor, Outcome
from sluice.runtime.outbox import Outbox
from sluice.scheduling.templating import ObjectTemplates

log = logging.getLogger("sluice.worker")


class RunActive(Protocol):
    """What a worker asks the state store (``sluice.runtime.run.RunActivity``) before doing work."""

    def __call__(self, run_id: str) -> bool:
        """Whether the run is still going."""

    def settled(self, ready: ev.ObjectReady) -> str:
        """Why ``ready`` needs no work any more, or ""."""


_worker_numbers = itertools.count(1)


def worker_name(stage: str) -> str:
    """``stage@host:pid:n``: unique among the workers of all processes and hosts."""
    return f"{stage}@{socket.gethostname()}:{os.getpid()}:{next(_worker_numbers)}"


class StageWorker:
    """Processes the objects of one stage until :meth:`stop` is called."""

    def __init__(
        self,
        project: Project,
        bus: Bus,
        stage: StageSpec,
        executor: ObjectExecutor,
        *,
        concurrency: int | None = None,
        lease_s: float | None = None,
        max_poll: int = 500,
        run_active: RunActive | None = None,
        stop_grace_s: float = 10.0,
    ) -> None:
        self.project = project
        self.bus = bus
        self.stage = stage
        self.executor = executor
        self.concurrency = concurrency or stage.concurrency
        self.lease_s = lease_s or project.lease_s
        self.max_poll = max_poll
        self.run_active = run_active
        self.stop_grace_s = stop_grace_s
        self.name = worker_name(stage.name)
        self.group = names.work_group(stage.name)
        self._stop = threading.Event()
        self._stopped = threading.Event()  # the objects in hand are settled: the heartbeat may stop
        self._queue: queue.Queue[tuple[Message, ev.ObjectReady] | None] = queue.Queue()
        self._held: dict[tuple[int, int], Message] = {}  # (partition, offset): offsets repeat across partitions
        self._held_lock = threading.Lock()
        self._busy = 0  # objects queued or running in executor threads
        self._slots = threading.Condition()
        self._consumer: Consumer | None = None
        self._outbox: Outbox | None = None
        # {{ ds }} and friends in sql: / source options, rendered for each run's logical date (docs/schedules.md)
        self.templates = ObjectTemplates(project, options_of=self._options_of)

    def _options_of(self, run_id: str) -> dict[str, Any] | None:
        """The options of ``run_id`` (its schedule, time zone, data interval), from its record; None when unknown."""
        state = self.executor.state
        if state is None:
            return None
        try:
            return state.get_run(run_id).options
        except Exception:
            return None

    def stop(self) -> None:
        """Stop taking work: the dispatch loop ends now, not at the end of its poll (objects in hand finish)."""
        self._stop.set()
        with self._slots:
            self._slots.notify_all()
        consumer = self._consumer
        if consumer is not None:
            consumer.wakeup()

    def run(self) -> None:
        """Work until stopped. Call from a thread of its own (or the main thread of a worker process)."""
        consumer = self.bus.consumer(self.group, names.ready_topic(self.stage.name), lease_s=self.lease_s)
        self._consumer = consumer
        self.bus.prepare_topics([names.EVENTS_TOPIC])  # the first object's outcome does not wait for a metadata lookup
        self._outbox = Outbox(self.bus, consumer, on_committed=self._release)
        threads = [
            threading.Thread(target=self._execute_loop, name=f"{self.stage.name}-exec-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        heartbeat = threading.Thread(target=self._heartbeat_loop, name=f"{self.stage.name}-heartbeat", daemon=True)
        for thread in [*threads, heartbeat]:
            thread.start()
        try:
            self._dispatch_loop(consumer)
        finally:
            for _ in range(self.concurrency):
                self._queue.put(None)
            deadline = time.monotonic() + self.stop_grace_s
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
            self._outbox.close()
            self._stopped.set()
            heartbeat.join(timeout=5)
            consumer.close()

    def _dispatch_loop(self, consumer: Consumer) -> None:
        # Take only as much real work as the executors can start soon, so other workers of the stage
        # get their share; while objects turn out to be instant (nothing to run), take big batches.
        instant = False
        while not self._stop.is_set():
            with self._slots:
                room = self.max_poll if instant else self.concurrency - self._busy
                if room <= 0:
                    self._slots.wait(0.05)
                    continue
            messages = consumer.poll(room, timeout_s=0.05)
            if not messages:
                continue
            metrics.child(metrics.EVENTS_CONSUMED, "ObjectReady").inc(len(messages))
            instant = not self._dispatch(messages)

    def _dispatch(self, messages: list[Message]) -> bool:
        """Handle a poll's work messages, in order; True when some were queued for the executor threads.

        Objects with nothing to run complete here: their ``ObjectStarted`` and ``ObjectLoaded`` go to the
        outbox in one hand-over per poll, with the messages they settle.
        """
        assert self._outbox is not None
        runs: dict[str, bool] = {}  # run id: still going (asked once per poll)
        events: list[ev.Event] = []
        settled: list[Message] = []
        held: dict[tuple[int, int], Message] = {}  # added to self._held before anything is handed on
        queued = False
        objects = self.project.objects
        started_event, loaded_event, now = ev.ObjectStarted, ev.ObjectLoaded, ev.now
        for message in messages:
            try:
                ready = ev.decode(message.value)
            except ValueError as exc:
                self._dead_letter(message, describe_malformed(exc))
                continue
            problem = self._unusable(ready)
            if problem:
                self._dead_letter(message, problem)
                continue
            assert isinstance(ready, ev.ObjectReady)
            active = runs.get(ready.run_id)
            if active is None:
                active = runs[ready.run_id] = self.run_active is None or self.run_active(ready.run_id)
            if not active:
                settled.append(message)
                continue
            held[message.partition, message.offset] = message
            if objects[ready.object_id].kind == "noop" and ready.delay_s <= 0 and not ready.fail:
                ts = now()  # nothing runs between its start and its end
                run_id, object_id, stage, attempt = ready.run_id, ready.object_id, ready.stage, ready.attempt
                events += (
                    started_event(run_id=run_id, object_id=object_id, stage=stage, attempt=attempt, worker=self.name, ts=ts),
                    loaded_event(run_id=run_id, object_id=object_id, stage=stage, attempt=attempt, worker=self.name, ts=ts),
                )
                settled.append(message)
                continue
            self._hold(held)
            if events or settled:  # what came before this object goes out first
                self._outbox.send(events, settled)
                events, settled = [], []
            with self._slots:
                self._busy += 1
            self._queue.put((message, ready))
            queued = True
        self._hold(held)
        if events or settled:
            self._outbox.send(events, settled)
        return queued

    def _hold(self, held: dict[tuple[int, int], Message]) -> None:
        """Add messages taken to those whose leases the heartbeat renews (until their commit releases them)."""
        if held:
            with self._held_lock:
                self._held.update(held)
            held.clear()

    def _unusable(self, event: ev.AnyEvent) -> str:
        """Why a decoded work message cannot be processed here, or "" when it can."""
        if not isinstance(event, ev.ObjectReady):
            return f"expected an ObjectReady on {names.ready_topic(self.stage.name)}, got {ev.event_type(event)}"
        obj = self.project.objects.get(event.object_id)
        if obj is None:
            return f"object {event.object_id} is not defined in project '{self.project.name}' (run {event.run_id})"
        if obj.stage != self.stage.name:
            return f"object {event.object_id} belongs to stage '{obj.stage}', not '{self.stage.name}' (run {event.run_id})"
        return ""

    def _dead_letter(self, message: Message, reason: str) -> None:
        assert self._outbox is not None
        log.error(
            "dead-lettering the message at partition %s offset %s of %s: %s",
            message.partition,
            message.offset,
            message.topic,
            reason,
        )
        self._outbox.dead_letter(message, reason, self.group)

    def _started(self, ready: ev.ObjectReady) -> ev.ObjectStarted:
        return ev.ObjectStarted(
            run_id=ready.run_id, object_id=ready.object_id, stage=ready.stage, attempt=ready.attempt, worker=self.name
        )

    def _execute_loop(self) -> None:
        assert self._outbox is not None
        while True:
            item = self._queue.get()
            if item is None:
                return
            message, ready = item
            if self._stop.is_set():
                # Stopping: do not start it. Uncommitted, it goes to another worker of the stage.
                with self._slots:
                    self._busy -= 1
                continue
            settled = self.run_active.settled(ready) if self.run_active is not None else ""
            if settled:
                log.info(
                    "not running a redelivered object: %s", settled, extra={"run_id": ready.run_id, "object_id": ready.object_id}
                )
                self._outbox.send([], [message])
                with self._slots:
                    self._busy -= 1
                    self._slots.notify()
                continue
            self._outbox.send([self._started(ready)], [])
            self._outbox.send(self._execute(ready), [message])
            with self._slots:
                self._busy -= 1
                self._slots.notify()

    def _has_current(self, obj: ObjectSpec) -> bool:
        try:
            return self.executor.has_current(obj)
        except Exception:  # the lake away: the failure's own words matter more than this remark
            return False

    def _execute(self, ready: ev.ObjectReady) -> list[ev.Event]:
        """The object's outcome: its checks' ``CheckFinished`` (run once the output is written, docs/checks.md), then
        ``ObjectLoaded``, or ``ObjectFailed`` (terminal when an ``error`` check did not pass: children are skipped)."""
        obj = self.project.objects[ready.object_id]
        started = time.perf_counter()
        try:
            obj = self.templates.render(obj, ready.run_id, ready.logical_date)
            outcome = self.executor.run(
                obj,
                ready.run_id,
                ready.inputs,
                delay_s=ready.delay_s,
                fail=ready.fail,
                logical_date=ready.logical_date,
                load_key=ready.load_key,
            )
            checked = outcome.checked or self.executor.check(
                obj, ready.run_id, outcome.location, ready.inputs, accumulated=outcome.accumulated
            )
            if not checked.failure:  # an output whose error check failed does not become the plain output
                outcome = self.executor.promote(obj, outcome)
                if outcome.commit is not None:  # its source's cursor moves only once its output is current
                    outcome.commit()
        except LoadRefused as exc:  # an error check failed inside the load: rolled back, nothing written
            assert obj.destination is not None
            failure = f"{exc.checked.failure}; nothing was written: the load into table '{obj.destination.table}' was rolled back"
            log.warning("%s", failure, extra={"run_id": ready.run_id, "object_id": obj.id})
            return [*exc.checked.events(ready), self._failed(ready, failure, "CheckFailed", False, started)]
        except Exception as exc:
            log.warning("attempt %d failed: %s", ready.attempt, exc, extra={"run_id": ready.run_id, "object_id": obj.id})
            log.debug("traceback:\n%s", traceback.format_exc())
            return [self._failed(ready, failure_text(exc, self.project.root), type(exc).__name__, is_transient(exc), started)]
        events: list[ev.Event] = list(checked.events(ready))
        if checked.failure:
            failure = checked.failure
            if outcome.pending is not None:  # a first run has no previous output to keep
                kept = " (the previous one stays)" if self._has_current(obj) else ""
                failure += f"; the output checked stays at {outcome.location}, not made current{kept}"
            failure += self._cursor_note(obj, outcome)
            log.warning("%s", failure, extra={"run_id": ready.run_id, "object_id": obj.id})
            return [*events, self._failed(ready, failure, "CheckFailed", False, started)]
        metrics.child(metrics.ROWS, self.stage.name).inc(outcome.rows)
        events.append(
            ev.ObjectLoaded(
                run_id=ready.run_id,
                object_id=ready.object_id,
                stage=ready.stage,
                attempt=ready.attempt,
                worker=self.name,
                rows=outcome.rows,
                duration_s=time.perf_counter() - started,
                location=outcome.location,
                content_hash=outcome.content_hash,
                destination=outcome.destination,
            )
        )
        return events

    def _cursor_note(self, obj: ObjectSpec, outcome: Outcome) -> str:
        """What a refused output did to an incremental source's cursor (docs/sources.md): the cursor stays when the
        candidate was the only output (the next run reads the records again); else it moved past them."""
        if not outcome.reread:
            return ""
        if outcome.commit is not None:
            return "; the source's cursor did not move: the next run reads these records again"
        return f"; the source's cursor moved past these records (its destination has them): {outcome.reread}"

    def _failed(self, ready: ev.ObjectReady, error: str, error_type: str, retryable: bool, started: float) -> ev.ObjectFailed:
        return ev.ObjectFailed(
            run_id=ready.run_id,
            object_id=ready.object_id,
            stage=ready.stage,
            attempt=ready.attempt,
            worker=self.name,
            error=error,
            error_type=error_type,
            retryable=retryable,
            duration_s=time.perf_counter() - started,
        )

    def _release(self, messages: list[Message]) -> None:
        with self._held_lock:
            for message in messages:
                self._held.pop((message.partition, message.offset), None)

    def _heartbeat_loop(self) -> None:
        interval = max(0.05, self.lease_s / 3)
        while not self._stopped.wait(interval):
            with self._held_lock:
                held = list(self._held.values())
            if held and self._consumer is not None:
                try:
                    self._consumer.extend(held)
                except Exception:
                    log.exception("could not renew leases")


def failure_text(exc: BaseException, root: Path) -> str:
    """What an ``ObjectFailed`` says: Sluice's own message as it is; any other exception (a bug in a user
    function, a driver's error) with its type and the innermost line of the project's code it went through."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, SluiceError):
        return text
    where = ""
    folder = root.resolve()
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if Path(frame.filename).resolve().is_relative_to(folder):
            where = f" (at {frame.filename}:{frame.lineno}, in {frame.name})"
            break
    return f"{type(exc).__name__}: {text}{where}"
