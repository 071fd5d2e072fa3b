"""The coordinator's state writer: saves in order, then commits; merges what queues up; reports failures."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import cast

import pytest

from sluice.bus.base import Consumer, Message
from sluice.errors import BusError, StateError
from sluice.runtime.saving import StateWriter, copy_state
from sluice.state.base import LatestOutput, ObjectState, StateStore


class FakeStore:
    """Records what is written, in order; ``gate`` (when set) holds each save until it is set again."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, object]] = []
        self.fail = fail
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def save(self, run_id: str, objects: Sequence[ObjectState], checkpoint: int | None = None) -> None:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.fail:
            raise StateError("the state store is gone")
        self.calls.append(("save", ([(s.object_id, s.status) for s in objects], checkpoint)))

    def record_outputs(self, project: str, outputs: Sequence[LatestOutput]) -> None:
        self.calls.append(("outputs", [o.object_id for o in outputs]))


class FakeConsumer:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def commit(self, messages: Sequence[Message]) -> None:
        self.store.calls.append(("commit", [m.offset for m in messages]))


def message(offset: int) -> Message:
    return Message("sluice.events", 0, offset, None, b"{}", 0.0)


def writer(store: FakeStore) -> StateWriter:
    return StateWriter(cast(StateStore, store), "r1", "p")


def test_states_and_checkpoint_are_saved_before_the_applied_events_are_committed() -> None:
    store = FakeStore()
    w = writer(store)
    output = LatestOutput(1, "fp", "h", None, 1, "r1", 0.0)
    w.submit([ObjectState(1, "s", status="loaded")], [message(4), message(5)], cast(Consumer, FakeConsumer(store)), [output])
    w.flush()
    w.close()
    assert store.calls == [("save", ([(1, "loaded")], 5)), ("outputs", [1]), ("commit", [4, 5])]


def test_what_queues_up_during_a_write_is_merged_newest_state_first() -> None:
    store = FakeStore()
    store.gate = threading.Event()
    w = writer(store)
    consumer = cast(Consumer, FakeConsumer(store))
    s = ObjectState(1, "s", status="ready")
    w.submit([s], [message(1)], consumer)
    assert store.entered.wait(10)  # the first write is under way and held
    s.status = "running"
    w.submit([s, ObjectState(2, "s")], [message(2)], consumer)
    s.status = "loaded"
    w.submit([s], [message(3)], consumer)
    s.status = "changed after the hand-over"
    store.gate.set()
    w.flush()
    w.close()
    assert store.calls == [
        ("save", ([(1, "ready")], 1)),
        ("commit", [1]),
        ("save", ([(1, "loaded"), (2, "pending")], 3)),
        ("commit", [2]),
        ("commit", [3]),
    ]


def test_a_failed_write_is_raised_in_the_callers_thread_and_nothing_is_committed() -> None:
    store = FakeStore(fail=True)
    w = writer(store)
    w.submit([ObjectState(1, "s")], [message(1)], cast(Consumer, FakeConsumer(store)))
    with pytest.raises(StateError, match="gone"):
        w.flush()
    with pytest.raises(StateError, match="gone"):
        w.submit([ObjectState(2, "s")])
    w.close()
    assert store.calls == []


def test_copy_state_copies_every_field() -> None:
    s = ObjectState(7, "s", "loaded", 2, 10, 1.5, "loc", "h", "fp", "err", "why", 1.0, 2.0, 3.0)
    copied = copy_state(s)
    assert copied == s and copied is not s


def test_nothing_is_saved_or_committed_before_the_publications_handed_over_are_written() -> None:
    store = FakeStore()
    w = writer(store)
    written = threading.Event()
    order: list[str] = []

    def wait() -> None:
        assert written.wait(10)
        order.append("written")

    w.submit([ObjectState(1, "s", status="loaded")], [message(7)], cast(Consumer, FakeConsumer(store)), published=[wait])
    assert store.calls == []
    written.set()
    w.flush()
    w.close()
    assert order == ["written"]
    assert store.calls == [("save", ([(1, "loaded")], 7)), ("commit", [7])]


def test_a_publication_that_failed_is_raised_in_the_callers_thread_and_nothing_is_saved() -> None:
    store = FakeStore()
    w = writer(store)

    def failed() -> None:
        raise BusError("Kafka did not acknowledge")

    w.submit([ObjectState(1, "s", status="loaded")], [message(3)], cast(Consumer, FakeConsumer(store)), published=[failed])
    with pytest.raises(BusError, match="acknowledge"):
        w.flush()
    w.close()
    assert store.calls == []
