"""The run state machine on its own: events in, decisions out, no bus, no state store, no clock."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import pytest

from sluice import events as ev
from sluice.project.model import RetrySpec
from sluice.runtime.run_state import STREAM_RUN, Decision, Freshness, FreshnessCheck, Ready, Retry, RunState, Skip
from sluice.state.base import LatestOutput, ObjectState

RUN = "r1"
CHAIN = {1: (), 2: (1,), 3: (2,)}
FAN_IN = {1: (), 2: (), 3: (1, 2)}
DIAMOND = {1: (), 2: (1,), 3: (1,), 4: (2, 3)}
# 1 -> 2 -> 3, 1 -> 4, and 5 on its own
TREE = {1: (), 2: (1,), 3: (2,), 4: (1,), 5: ()}


def machine(
    parents: Mapping[int, Sequence[int]],
    *,
    attempts: int = 3,
    backoff_s: float = 0.5,
    max_backoff_s: float = 30.0,
    freshness: FreshnessCheck | None = None,
    states: dict[int, ObjectState] | None = None,
) -> RunState:
    states = states if states is not None else {oid: ObjectState(oid, "s") for oid in parents}
    retry = RetrySpec(attempts=attempts, backoff_s=backoff_s, max_backoff_s=max_backoff_s)
    return RunState(states, parents, retry=retry, freshness=freshness)


def ready(oid: int, attempt: int = 1) -> ev.ObjectReady:
    return ev.ObjectReady(run_id=RUN, object_id=oid, stage="s", attempt=attempt)


def started(oid: int, attempt: int = 1) -> ev.ObjectStarted:
    return ev.ObjectStarted(run_id=RUN, object_id=oid, stage="s", attempt=attempt)


def loaded(oid: int, attempt: int = 1, content_hash: str = "") -> ev.ObjectLoaded:
    return ev.ObjectLoaded(run_id=RUN, object_id=oid, stage="s", attempt=attempt, content_hash=content_hash, location=f"l{oid}")


def failed(oid: int, attempt: int = 1, *, retryable: bool = True) -> ev.ObjectFailed:
    return ev.ObjectFailed(run_id=RUN, object_id=oid, stage="s", attempt=attempt, error="boom", retryable=retryable)


def previous(oid: int, content_hash: str = "old", fingerprint: str = "fp") -> LatestOutput:
    return LatestOutput(oid, fingerprint, content_hash, f"lake/{oid}", 7, "r0", 1.0)


def snapshot(m: RunState) -> dict[int, ObjectState]:
    return {oid: dataclasses.replace(s) for oid, s in m.states.items()}


# ----- parents in any order ---------------------------------------------------------------------------

ORDERS: list[tuple[str, Mapping[int, Sequence[int]], list[Decision], list[tuple[int, list[Decision]]]]] = [
    ("chain", CHAIN, [Ready(1, 1)], [(1, [Ready(2, 1)]), (2, [Ready(3, 1)]), (3, [])]),
    ("fan-in, first root first", FAN_IN, [Ready(1, 1), Ready(2, 1)], [(1, []), (2, [Ready(3, 1)]), (3, [])]),
    ("fan-in, second root first", FAN_IN, [Ready(1, 1), Ready(2, 1)], [(2, []), (1, [Ready(3, 1)]), (3, [])]),
    (
        "diamond, left branch first",
        DIAMOND,
        [Ready(1, 1)],
        [(1, [Ready(2, 1), Ready(3, 1)]), (2, []), (3, [Ready(4, 1)]), (4, [])],
    ),
    (
        "diamond, right branch first",
        DIAMOND,
        [Ready(1, 1)],
        [(1, [Ready(2, 1), Ready(3, 1)]), (3, []), (2, [Ready(4, 1)]), (4, [])],
    ),
]


@pytest.mark.parametrize(("parents", "first", "steps"), [case[1:] for case in ORDERS], ids=[case[0] for case in ORDERS])
def test_a_child_is_ready_once_its_last_parent_is_loaded(
    parents: Mapping[int, Sequence[int]], first: list[Decision], steps: list[tuple[int, list[Decision]]]
) -> None:
    m = machine(parents)
    assert m.start(now=0.0) == first
    for now, (oid, expected) in enumerate(steps, start=1):
        assert m.status() is None
        assert m.apply(started(oid), now=now) == []
        assert m.apply(loaded(oid), now=now) == expected, f"after {oid} loaded"
    assert m.finished and m.status() == "succeeded"
    assert {s.status for s in m.states.values()} == {"loaded"}


def test_ready_sets_the_attempt_and_the_time_and_loaded_records_the_output() -> None:
    m = machine(CHAIN)
    m.start(now=5.0)
    assert (m.states[1].status, m.states[1].attempt, m.states[1].ready_at) == ("ready", 1, 5.0)
    m.apply(started(1), now=6.0)
    assert m.states[1].status == "running"
    m.apply(loaded(1, content_hash="h1"), now=7.0)
    s = m.states[1]
    assert (s.status, s.location, s.content_hash, s.error) == ("loaded", "l1", "h1", None)
    assert m.states[2].ready_at == 7.0 and m.remaining == 2


# ----- retries ----------------------------------------------------------------------------------------

RETRIES = [
    # attempts, backoff_s, max_backoff_s, delay before each retry
    (3, 0.5, 30.0, [0.5, 1.0]),
    (4, 2.0, 3.0, [2.0, 3.0, 3.0]),
    (2, 10.0, 30.0, [10.0]),
]


@pytest.mark.parametrize(("attempts", "backoff_s", "max_backoff_s", "delays"), RETRIES)
def test_a_retryable_failure_is_retried_after_its_backoff_until_attempts_run_out(
    attempts: int, backoff_s: float, max_backoff_s: float, delays: list[float]
) -> None:
    m = machine(TREE, attempts=attempts, backoff_s=backoff_s, max_backoff_s=max_backoff_s)
    m.start(now=0.0)
    now = 100.0
    for attempt, delay in enumerate(delays, start=1):
        assert m.apply(failed(1, attempt), now=now) == [Retry(1, attempt + 1, now + delay)]
        assert m.states[1].status == "retrying" and m.next_due == now + delay
        assert m.due(now + delay - 0.01) == []
        assert m.due(now + delay) == [Ready(1, attempt + 1)]
        assert (m.states[1].status, m.states[1].attempt, m.next_due) == ("ready", attempt + 1, None)
        now += 100.0
    assert m.apply(failed(1, attempts), now=now) == [
        Skip(2, "parent 1 failed"),
        Skip(3, "ancestor 1 failed"),
        Skip(4, "parent 1 failed"),
    ]
    assert m.states[1].status == "failed" and m.states[1].error == "boom"
    assert m.remaining == 1 and m.status() is None  # 5 is still ready
    assert m.apply(loaded(5), now=now) == []
    assert m.status() == "failed"


@pytest.mark.parametrize(("retryable", "attempts"), [(False, 3), (True, 1)], ids=["terminal error", "one attempt"])
def test_a_failure_without_retry_skips_the_descendants_at_once(retryable: bool, attempts: int) -> None:
    m = machine(TREE, attempts=attempts)
    m.start(now=0.0)
    decisions = m.apply(failed(1, retryable=retryable), now=3.0)
    assert decisions == [Skip(2, "parent 1 failed"), Skip(3, "ancestor 1 failed"), Skip(4, "parent 1 failed")]
    assert [(m.states[oid].status, m.states[oid].finished_at) for oid in (2, 3, 4)] == [("skipped", 3.0)] * 3
    assert m.next_due is None


def test_a_descendant_already_loaded_is_not_skipped() -> None:
    m = machine(DIAMOND)
    m.start(now=0.0)
    m.apply(loaded(1), now=1.0)
    m.apply(loaded(2), now=2.0)
    assert m.apply(failed(3, retryable=False), now=3.0) == [Skip(4, "parent 3 failed")]
    assert m.states[2].status == "loaded"


# ----- what is not news -------------------------------------------------------------------------------

IGNORED: list[tuple[str, list[ev.AnyEvent], ev.AnyEvent]] = [
    ("a duplicate load", [loaded(1)], loaded(1)),
    ("a start after the load", [loaded(1)], started(1)),
    ("a duplicate start", [started(1)], started(1)),
    ("a load of another attempt", [], loaded(1, attempt=2)),
    ("a failure of a stale attempt", [failed(1, 1)], failed(1, 1)),
    ("a load of the stale attempt once the retry is out", [failed(1, 1)], loaded(1, 1)),
    ("a start of an object not yet ready", [], started(2)),
    ("an object not planned", [], loaded(99)),
    ("our own ready", [], ready(1)),
    ("a skip", [], ev.ObjectSkipped(run_id=RUN, object_id=2, stage="s", reason="x")),
    ("a run event", [], ev.RunStarted(run_id=RUN, project="p", targets=[3], planned=[1, 2, 3])),
]


@pytest.mark.parametrize(("before", "event"), [case[1:] for case in IGNORED], ids=[case[0] for case in IGNORED])
def test_events_that_are_not_news_change_nothing(before: list[ev.AnyEvent], event: ev.AnyEvent) -> None:
    m = machine(CHAIN)
    m.start(now=0.0)
    for earlier in before:
        assert m.apply(earlier, now=1.0) is not None
    m.due(1000.0)  # a retry scheduled by ``before`` is handed out
    m.take_changed()
    states = snapshot(m)
    assert m.apply(event, now=2.0) is None
    assert m.states == states
    assert m.take_changed() == []


# ----- fresh objects ----------------------------------------------------------------------------------


class Recorder:
    """A freshness check: objects in ``fresh_when`` are fresh when their parents' hashes are the ones given."""

    def __init__(self, fresh_when: Mapping[int, list[str]]) -> None:
        self.fresh_when = fresh_when
        self.asked: list[tuple[int, list[str]]] = []

    def __call__(self, object_id: int, parent_hashes: Sequence[str]) -> Freshness:
        self.asked.append((object_id, list(parent_hashes)))
        if self.fresh_when.get(object_id) == list(parent_hashes):
            return Freshness("fp", previous(object_id))
        return Freshness(f"new-{object_id}", None)


def test_objects_fresh_at_planning_are_skipped_first_and_release_their_children() -> None:
    check = Recorder({})
    m = RunState.planned(
        [1, 2, 3], dict.fromkeys(CHAIN, "s"), CHAIN, {1: previous(1, "h1")}, retry=RetrySpec(), freshness=check, now=9.0
    )
    assert m.states[1].status == "skipped" and m.remaining == 2
    assert m.start(now=10.0) == [Skip(1, "fresh: unchanged since run r0", fresh=True), Ready(2, 1)]
    assert check.asked == [(2, ["h1"])]
    s = m.states[1]
    assert (s.content_hash, s.location, s.rows, s.fingerprint, s.finished_at) == ("h1", "lake/1", 7, "fp", 9.0)
    assert m.states[2].fingerprint == "new-2"


def test_a_streaming_objects_output_is_fresh_as_streamed_not_since_a_run_called_stream() -> None:
    streamed = dataclasses.replace(previous(1, "h1"), run_id=STREAM_RUN)
    m = RunState.planned([1], {1: "s"}, {1: ()}, {1: streamed}, retry=RetrySpec(), freshness=Recorder({}), now=9.0)
    assert m.start(now=10.0) == [Skip(1, "fresh: streamed (its output is what 'sluice stream' has committed)", fresh=True)]


FRESH_CASES = [
    (
        "same parent content: fresh, and its child is handed out",
        "h1",
        [Skip(2, "fresh: unchanged since run r0", fresh=True), Ready(3, 1)],
    ),
    ("new parent content: runs", "h2", [Ready(2, 1)]),
]


@pytest.mark.parametrize(("content_hash", "expected"), [case[1:] for case in FRESH_CASES], ids=[case[0] for case in FRESH_CASES])
def test_a_child_is_fresh_when_its_parents_new_content_matches(content_hash: str, expected: list[Decision]) -> None:
    check = Recorder({2: ["h1"]})
    m = machine(CHAIN, freshness=check)
    m.start(now=0.0)
    assert m.apply(loaded(1, content_hash=content_hash), now=1.0) == expected
    assert [oid for oid, _ in check.asked] == [1, 2, *([3] if expected[-1] == Ready(3, 1) else [])]
    if expected[0] == Ready(2, 1):
        assert m.states[2].fingerprint == "new-2"
    else:
        assert (m.states[2].status, m.states[2].content_hash, m.remaining) == ("skipped", "old", 1)


def test_freshness_is_asked_once_per_object_not_again_for_a_retry() -> None:
    check = Recorder({})
    m = machine(CHAIN, freshness=check)
    m.start(now=0.0)
    m.apply(failed(1), now=1.0)
    m.due(100.0)
    m.apply(loaded(1, attempt=2, content_hash="h"), now=101.0)
    assert check.asked == [(1, []), (2, ["h"])]


def test_a_loaded_object_without_content_hash_passes_its_fingerprint_to_its_children() -> None:
    check = Recorder({})
    m = machine(CHAIN, freshness=check)
    m.start(now=0.0)
    m.apply(loaded(1), now=1.0)
    assert check.asked[-1] == (2, ["new-1"])


# ----- cancel -----------------------------------------------------------------------------------------


def test_cancel_skips_everything_not_final_and_finishes_the_run() -> None:
    m = machine(TREE)
    m.start(now=0.0)
    m.apply(loaded(5), now=1.0)
    m.apply(failed(1), now=1.0)
    assert m.cancel(now=2.0) == [Skip(oid, "run cancelled") for oid in (1, 2, 3, 4)]
    assert m.finished and m.status() == "cancelled" and m.next_due is None
    assert m.due(1000.0) == []
    assert m.apply(loaded(1), now=3.0) is None
    assert (m.states[1].status, m.states[1].error, m.states[5].status) == ("skipped", "boom", "loaded")


# ----- resume -----------------------------------------------------------------------------------------

# Stored states: 1 loaded; 2 (child of 1) and 4 (a root) pending; 3 (child of 2) pending.
RESUMES: list[tuple[str, list[ev.AnyEvent], list[Decision], list[Decision]]] = [
    ("nothing replayed: what is pending is handed out", [], [Ready(2, 1), Ready(4, 1)], []),
    ("our own ready says 2 was handed out", [ready(2)], [Ready(4, 1)], []),
    ("2 handed out and started", [ready(2), started(2)], [Ready(4, 1)], []),
    ("2 loaded while no coordinator listened", [ready(2), loaded(2)], [Ready(3, 1), Ready(4, 1)], []),
    ("2 failed for good", [ready(2), failed(2, retryable=False)], [Skip(3, "parent 2 failed"), Ready(4, 1)], []),
    ("2 waits for a retry: it is due at once", [ready(2), failed(2)], [Ready(4, 1)], [Ready(2, 2)]),
    ("2's retry was handed out already", [ready(2), failed(2), ready(2, 2)], [Ready(4, 1)], []),
    ("a stale ready changes nothing", [ready(2), failed(2), ready(2, 2), ready(2, 1)], [Ready(4, 1)], []),
    ("a load replayed before its ready is ignored", [loaded(2)], [Ready(2, 1), Ready(4, 1)], []),
]


@pytest.mark.parametrize(("replayed", "resumed", "due"), [case[1:] for case in RESUMES], ids=[case[0] for case in RESUMES])
def test_resume_replays_the_log_then_decides_once(
    replayed: list[ev.AnyEvent], resumed: list[Decision], due: list[Decision]
) -> None:
    stored = {oid: ObjectState(oid, "s") for oid in TREE if oid != 5}
    stored[1] = ObjectState(1, "s", status="loaded", attempt=1, content_hash="h1", location="l1")
    parents = {oid: TREE[oid] for oid in stored}
    m = machine(parents, states=stored)
    for event in replayed:
        m.replay(event)
    assert m.states[3].status == "pending", "replaying decides nothing"
    assert m.resume(now=50.0) == resumed
    assert m.due(now=50.0) == due
    assert m.remaining == sum(1 for s in m.states.values() if s.status not in ("loaded", "failed", "skipped"))


def test_rehand_hands_what_was_out_again_as_its_next_attempt_before_resume_hands_the_rest() -> None:
    # An interrupted run: 1 loaded, 2 and 4 handed out (2 started), 5 handed out twice (a retry), 3 still waiting
    m = machine(TREE)
    for event in (ready(1), ready(5), started(1), loaded(1), failed(5), ready(2), ready(4), started(2), ready(5, 2)):
        m.replay(event)
    assert m.rehand(now=9.0) == [Ready(2, 2), Ready(4, 2), Ready(5, 3)]
    assert {oid: (s.status, s.attempt, s.ready_at) for oid, s in m.states.items() if oid != 1} == {
        2: ("ready", 2, 9.0),
        3: ("pending", 0, None),
        4: ("ready", 2, 9.0),
        5: ("ready", 3, 9.0),
    }
    assert m.resume(now=9.0) == [], "nothing else is ready: 3 waits for 2"
    assert m.apply(loaded(2, 1), now=10.0) is None, "the earlier attempt's outcome is not news"
    assert m.apply(loaded(2, 2), now=10.0) == [Ready(3, 1)]


def test_replay_tells_which_events_changed_an_object() -> None:
    m = machine(CHAIN)
    assert [m.replay(e) for e in (ready(1), ready(1), started(1), loaded(1), loaded(1), ready(1, 2))] == [
        True,
        False,
        True,
        True,
        False,
        False,
    ]


# ----- the run's outcome ------------------------------------------------------------------------------

OUTCOMES: list[tuple[str, list[ev.AnyEvent], bool, str | None]] = [
    ("still running", [loaded(1)], False, None),
    ("every object loaded", [loaded(1), loaded(2), loaded(3)], False, "succeeded"),
    ("one failure skips the rest", [loaded(1), failed(2, retryable=False)], False, "failed"),
    ("a retry pending keeps it running", [loaded(1), failed(2)], False, None),
    ("cancelled after everything loaded", [loaded(1), loaded(2), loaded(3)], True, "cancelled"),
    ("cancelled half way", [loaded(1)], True, "cancelled"),
]


@pytest.mark.parametrize(("events", "cancel", "status"), [case[1:] for case in OUTCOMES], ids=[case[0] for case in OUTCOMES])
def test_run_status(events: list[ev.AnyEvent], cancel: bool, status: str | None) -> None:
    m = machine(CHAIN)
    m.start(now=0.0)
    for event in events:
        m.apply(event, now=1.0)
    if cancel:
        m.cancel(now=2.0)
    assert m.status() == status
    assert m.finished == (status is not None)


def test_take_changed_gives_each_changed_state_once() -> None:
    m = machine(CHAIN)
    m.start(now=0.0)
    assert [s.object_id for s in m.take_changed()] == [1]
    m.apply(started(1), now=1.0)
    m.apply(loaded(1), now=1.0)
    assert [(s.object_id, s.status) for s in m.take_changed()] == [(1, "loaded"), (2, "ready")]
    assert m.take_changed() == []
