"""The run state machine: events in, decisions out. Pure: no bus, no state store, no lake, no clock.

One :class:`RunState` holds the :class:`~sluice.state.base.ObjectState` of every planned object of one
run and decides what follows from each event the run's workers publish:

* an ``ObjectLoaded`` releases children: a :class:`Ready` (attempt 1) once a child's last parent is in,
  or a fresh :class:`Skip` when the child's new fingerprint matches its last success (asked of the
  injected :data:`FreshnessCheck`, which knows fingerprints, the state store's history and the lake);
* a retryable ``ObjectFailed`` with attempts left gives a :class:`Retry` at ``now + backoff``; the
  :class:`Ready` of the next attempt comes from :meth:`RunState.due` once that time has come;
* a final ``ObjectFailed`` skips every descendant (``parent X failed`` / ``ancestor X failed``);
* a duplicate, an event for an object already final or for another attempt changes nothing.

Time is always passed in (``now``, epoch seconds). The shell (``runtime/coordinator.py``) turns
decisions into events on the bus, saves :meth:`RunState.take_changed` and keeps the metrics.

>>> states = {1: ObjectState(1, "ingest"), 2: ObjectState(2, "standardize")}
>>> machine = RunState(states, {1: (), 2: (1,)}, retry=RetrySpec())
>>> machine.start(now=0.0)
[Ready(object_id=1, attempt=1)]
>>> machine.apply(ObjectLoaded(run_id="r", object_id=1, stage="ingest", attempt=1), now=1.0)
[Ready(object_id=2, attempt=1)]
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sluice.events import AnyEvent, ObjectFailed, ObjectLoaded, ObjectReady, ObjectStarted
from sluice.project.model import RetrySpec
from sluice.state.base import FINAL_OBJECT_STATUSES, LatestOutput, ObjectState

__all__ = ["Decision", "Freshness", "FreshnessCheck", "Ready", "Retry", "RunState", "Skip"]


@dataclass(frozen=True, slots=True)
class Ready:
    """Hand ``object_id`` to a worker of its stage for ``attempt`` (an ``ObjectReady``)."""

    object_id: int
    attempt: int


@dataclass(frozen=True, slots=True)
class Skip:
    """``object_id`` will not run in this run (an ``ObjectSkipped``); ``fresh`` when unchanged since its last success."""

    object_id: int
    reason: str
    fresh: bool = False


@dataclass(frozen=True, slots=True)
class Retry:
    """``object_id`` failed and will be ready again for ``attempt`` at ``due`` (epoch seconds)."""

    object_id: int
    attempt: int
    due: float


Decision = Ready | Skip | Retry


class Freshness(NamedTuple):
    """An object's ``fingerprint`` (None: its input is unknown) and, when it is fresh, the output it keeps."""

    fingerprint: str | None
    fresh: LatestOutput | None


FreshnessCheck = Callable[[int, Sequence[str]], Freshness]
"""``(object_id, parents' content hashes) -> Freshness``, asked once per object, when its parents are all in."""


_OUTCOMES = (ObjectLoaded, ObjectFailed, ObjectStarted)  # the events the machine reacts to (a tuple: cheapest isinstance)


def _never_fresh(object_id: int, parent_hashes: Sequence[str]) -> Freshness:
    return Freshness(None, None)


class RunState:
    """The state of one run's planned objects and the rules that move it.

    ``states`` maps every planned object id to its state (this object owns and mutates them);
    ``parents`` gives each planned object's parents (other ids are ignored); ``retry`` how often and
    after which backoff a retryable failure is tried again; ``freshness`` decides, when an object's
    parents are all in, its fingerprint and whether it is fresh (default: never fresh).
    """

    def __init__(
        self,
        states: dict[int, ObjectState],
        parents: Mapping[int, Sequence[int]],
        *,
        retry: RetrySpec,
        freshness: FreshnessCheck | None = None,
    ) -> None:
        self.states = states
        self.parents: dict[int, tuple[int, ...]] = {oid: tuple(parents.get(oid, ())) for oid in states}
        self.retry = retry
        self.freshness = freshness or _never_fresh
        self.children: dict[int, list[int]] = {oid: [] for oid in states}
        for oid, ps in self.parents.items():
            for parent in ps:
                if parent in self.children:
                    self.children[parent].append(oid)
        self.cancelled = False
        self.remaining = 0
        self._waiting: dict[int, int] = {}
        self._retries: list[tuple[float, int, int]] = []  # (due, object id, attempt)
        self._changed: dict[int, ObjectState] = {}
        self._index()

    @classmethod
    def planned(
        cls,
        order: Sequence[int],
        stages: Mapping[int, str],
        parents: Mapping[int, Sequence[int]],
        fresh: Mapping[int, LatestOutput],
        *,
        retry: RetrySpec,
        freshness: FreshnessCheck | None = None,
        now: float,
    ) -> RunState:
        """A new run of ``order``: every object pending but those ``fresh`` at planning time (skipped, keeping
        their last output). :meth:`start` then says what to publish first."""
        states = {oid: ObjectState(oid, stages[oid]) for oid in order}
        for oid, previous in fresh.items():
            _keep(states[oid], previous, now)
        machine = cls(states, parents, retry=retry, freshness=freshness)
        machine._changed.clear()
        return machine

    # ----- queries ----------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """Every planned object is final (or the run was cancelled)."""
        return self.remaining == 0

    @property
    def next_due(self) -> float | None:
        """When the earliest scheduled retry is due (epoch seconds), or None."""
        return self._retries[0][0] if self._retries else None

    def status(self) -> str | None:
        """``cancelled``, ``failed`` or ``succeeded`` once finished; None while objects are still to settle."""
        if self.cancelled:
            return "cancelled"
        if self.remaining:
            return None
        return "failed" if any(s.status == "failed" for s in self.states.values()) else "succeeded"

    def done(self, oid: int) -> bool:
        """Loaded in this run, or skipped as fresh: its output is available to children."""
        s = self.states.get(oid)
        return s is not None and (s.status == "loaded" or (s.status == "skipped" and s.content_hash is not None))

    def take_changed(self) -> list[ObjectState]:
        """The states changed since the last call (each once), to be saved."""
        changed = list(self._changed.values())
        self._changed.clear()
        return changed

    # ----- starting and resuming --------------------------------------------------------------------

    def start(self, now: float) -> list[Decision]:
        """The first decisions of a new run: fresh skips decided at planning time, then the objects with no
        pending parent (some of which may turn out fresh)."""
        out: list[Decision] = [
            Skip(oid, s.reason or "fresh", fresh=True) for oid, s in self.states.items() if s.status == "skipped"
        ]
        self._ready_all((oid for oid, s in self.states.items() if s.status == "pending" and self._waiting[oid] == 0), now, out)
        return out

    def replay(self, event: AnyEvent) -> bool:
        """Apply an event from the log of a run whose coordinator died, to the object it names only; True when
        it changed that object.

        Our own ``ObjectReady`` says the object was handed out (for that attempt). What follows from the
        events (children ready, descendants skipped, retries) is decided by :meth:`resume`, once.
        """
        if not isinstance(event, ObjectReady):
            return self._apply(event, 0.0, None)
        s = self.states.get(event.object_id)
        if s is None or s.status not in ("pending", "retrying") or event.attempt < s.attempt:
            return False
        s.status = "ready"
        s.attempt = event.attempt
        self._changed[s.object_id] = s
        return True

    def resume(self, now: float) -> list[Decision]:
        """After :meth:`replay`: skip the descendants of failed objects, hand out what is ready, and
        schedule every object waiting for a retry at ``now``."""
        self._index()
        self._retries = [(now, s.object_id, s.attempt + 1) for s in self.states.values() if s.status == "retrying"]
        heapq.heapify(self._retries)
        out: list[Decision] = []
        for oid, s in list(self.states.items()):
            if s.status == "failed":
                self._skip_descendants(oid, now, out)
        self._ready_all((oid for oid, s in self.states.items() if s.status == "pending" and self._waiting[oid] == 0), now, out)
        return out

    def rehand(self, now: float) -> list[Decision]:
        """After :meth:`replay`, for a run whose handed-out work was dropped (it was ``interrupted``: workers skip
        its messages): hand every object that was out (``ready`` or ``running``) again as its next attempt. A
        worker that still gets the earlier attempt's message skips it (a newer attempt is recorded)."""
        out: list[Decision] = []
        for oid, s in list(self.states.items()):
            if s.status in ("ready", "running"):
                self._make_ready(oid, s.attempt + 1, now, out)
        return out

    # ----- reacting ---------------------------------------------------------------------------------

    def apply(self, event: AnyEvent, now: float) -> list[Decision] | None:
        """React to one event of this run. Returns the decisions it causes, or None when it is not news
        (a duplicate, an object already final, another attempt, an event type the machine ignores)."""
        out: list[Decision] = []
        return out if self._apply(event, now, out) else None

    def due(self, now: float) -> list[Decision]:
        """The ``Ready`` of every retry due at ``now``."""
        out: list[Decision] = []
        while self._retries and self._retries[0][0] <= now:
            _, oid, attempt = heapq.heappop(self._retries)
            if self.states[oid].status == "retrying":
                self._make_ready(oid, attempt, now, out)
        return out

    def cancel(self, now: float) -> list[Decision]:
        """Stop the run: every object not final is skipped (``run cancelled``) and the run is finished."""
        self.cancelled = True
        out: list[Decision] = []
        for oid, s in self.states.items():
            if s.status not in FINAL_OBJECT_STATUSES:
                s.status = "skipped"
                s.reason = "run cancelled"
                s.finished_at = now
                self._changed[oid] = s
                out.append(Skip(oid, "run cancelled"))
        self._retries.clear()
        self.remaining = 0
        return out

    # ----- the rules --------------------------------------------------------------------------------

    def _apply(self, event: AnyEvent, now: float, out: list[Decision] | None) -> bool:
        """Apply an object event; ``out`` None while replaying (no consequences). True when it was news."""
        if not isinstance(event, _OUTCOMES):
            return False
        s = self.states.get(event.object_id)
        if s is None or s.status in FINAL_OBJECT_STATUSES or event.attempt != s.attempt:
            return False
        if isinstance(event, ObjectStarted):
            if s.status != "ready":
                return False
            s.status = "running"
            s.started_at = event.ts.timestamp()
        elif isinstance(event, ObjectLoaded):
            s.status = "loaded"
            s.rows = event.rows
            s.duration_s = event.duration_s
            s.location = event.location
            s.content_hash = event.content_hash or s.fingerprint or ""
            s.error = None
            s.finished_at = event.ts.timestamp()
            self.remaining -= 1
            if out is not None:
                self._release_children(s.object_id, now, out)
        else:
            s.error = event.error
            s.duration_s = event.duration_s
            if event.retryable and s.attempt < self.retry.attempts:
                s.status = "retrying"
                if out is not None:
                    retry = Retry(s.object_id, s.attempt + 1, now + self.retry.delay_before(s.attempt + 1))
                    heapq.heappush(self._retries, (retry.due, retry.object_id, retry.attempt))
                    out.append(retry)
            else:
                s.status = "failed"
                s.finished_at = event.ts.timestamp()
                self.remaining -= 1
                if out is not None:
                    self._skip_descendants(s.object_id, now, out)
        self._changed[s.object_id] = s
        return True

    def _index(self) -> None:
        done = {oid for oid in self.states if self.done(oid)}
        self._waiting = {oid: sum(1 for p in ps if p not in done) for oid, ps in self.parents.items()}
        self.remaining = sum(1 for s in self.states.values() if s.status not in FINAL_OBJECT_STATUSES)

    def _release_children(self, oid: int, now: float, out: list[Decision]) -> None:
        waiting = self._waiting
        states = self.states
        ready = []
        for child in self.children[oid]:
            left = waiting[child] - 1
            waiting[child] = left
            if left == 0 and states[child].status == "pending":
                ready.append(child)
        for child in ready:  # once all are counted: a fresh skip among them releases its own children
            self._make_ready(child, 1, now, out)

    def _skip_descendants(self, oid: int, now: float, out: list[Decision]) -> None:
        for child in sorted(self._descendants(oid)):
            s = self.states[child]
            if s.status in FINAL_OBJECT_STATUSES:
                continue
            s.status = "skipped"
            s.reason = f"parent {oid} failed" if oid in self.parents[child] else f"ancestor {oid} failed"
            s.finished_at = now
            self.remaining -= 1
            self._changed[child] = s
            out.append(Skip(child, s.reason))

    def _descendants(self, oid: int) -> set[int]:
        seen: set[int] = set()
        stack = list(self.children[oid])
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(self.children[node])
        return seen

    def _ready_all(self, oids: Iterable[int], now: float, out: list[Decision]) -> None:
        for oid in list(oids):
            self._make_ready(oid, 1, now, out)

    def _make_ready(self, oid: int, attempt: int, now: float, out: list[Decision]) -> None:
        states = self.states
        s = states[oid]
        if attempt == 1:
            parent_hashes = [states[p].content_hash or "" for p in self.parents[oid]]
            fp, previous = self.freshness(oid, parent_hashes)
            s.fingerprint = fp
            if previous is not None:
                _keep(s, previous, now)
                self.remaining -= 1
                self._changed[oid] = s
                out.append(Skip(oid, s.reason or "fresh", fresh=True))
                self._release_children(oid, now, out)
                return
        s.status = "ready"
        s.attempt = attempt
        s.ready_at = now
        self._changed[oid] = s
        out.append(Ready(oid, attempt))


STREAM_RUN = "stream"
"""The run id of a streaming object's output (what ``sluice stream`` committed), which no run wrote."""


def _keep(s: ObjectState, previous: LatestOutput, now: float) -> None:
    """Skip ``s`` as fresh: it keeps ``previous``, its last successful output."""
    s.status = "skipped"
    if previous.run_id == STREAM_RUN:
        s.reason = "fresh: streamed (its output is what 'sluice stream' has committed)"
    else:
        s.reason = f"fresh: unchanged since run {previous.run_id}"
    s.fingerprint = previous.fingerprint
    s.content_hash = previous.content_hash
    s.location = previous.location
    s.rows = previous.rows
    s.finished_at = now
