"""Publishing of events, with commits of the messages they answer (at-least-once: a message is committed only
once the events that answer it are written).

Callers hand the outbox events and the work messages those events settle. How they go out depends on the bus:

* **Batched** (the embedded log, whose writes are transactions): a background thread publishes everything
  queued in one bus write (group commit) that also commits the settled messages. Under load batches grow by
  themselves; when idle each event goes out at once.
* **At once** (Kafka, ``Bus.writes_in_background``): ``send`` hands the events to the bus's producer in the
  caller's thread (``Bus.publish_many_nowait``, microseconds) and queues the write's waiter with the messages
  it settles; the background thread waits for the writes, in order, and commits the messages of every write
  that completed in one commit. The next events never wait for the previous write's acknowledgement and
  commit round trip (with the batched way each of ``bench/kafka.py``'s hops queued behind them).

A write that fails (a locked or unreachable bus) is retried with backoff, in order, so no outcome is lost.
At once, the events of a failed write are published again by the background thread, batched, and until
they are written every later event is queued behind them; an event whose key (its object) has a write
still unacknowledged is queued too, so one object's events reach the log in the order they were sent even
when a write fails. Dead letters (messages the caller could not use) go to ``sluice.dead-letters`` before the
messages they settle are committed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import NamedTuple

from sluice import events as ev
from sluice.bus import names
from sluice.bus.base import Bus, Consumer, Message
from sluice.bus.dead_letter import counted, dead_letter_record
from sluice.observability import metrics

log = logging.getLogger("sluice.outbox")
_RETRY_MIN_S = 0.05
_RETRY_MAX_S = 5.0

DeadLetter = tuple[str, tuple[str | None, bytes]]
"""(the topic of the message dead-lettered, the dead-letter record)."""


class _Write(NamedTuple):
    """A write handed to the bus at once: its waiter, and what it carries (to publish again if it fails)."""

    written: Callable[[], None]
    events: list[ev.Event]
    messages: list[tuple[str | None, bytes]]
    settled: list[Message]
    dead: list[DeadLetter]


class Outbox:
    """Publishes events to ``sluice.events`` and commits settled messages on ``consumer`` (see the module doc)."""

    def __init__(
        self, bus: Bus, consumer: Consumer | None = None, on_committed: Callable[[list[Message]], None] | None = None
    ) -> None:
        self.bus = bus
        self.consumer = consumer
        self.on_committed = on_committed
        self.at_once = bus.writes_in_background and consumer is not None
        """True when events go to the bus in the sender's thread (see the module doc)."""
        self._events: list[ev.Event] = []  # queued: batched, or (at once) waiting behind a write to retry
        self._settled: list[Message] = []
        self._dead: list[DeadLetter] = []
        self._writes: list[_Write] = []  # at once: handed to the bus, not yet waited for
        self._pending_keys: dict[str | None, int] = {}  # at once: keys of the unsettled writes, how many writes each
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="outbox", daemon=True)
        self._thread.start()

    def send(self, events: Sequence[ev.Event], settled: Sequence[Message]) -> None:
        """Publish ``events``, then commit ``settled`` (the messages they answer)."""
        self._send(list(events), list(settled), [])

    def dead_letter(self, message: Message, reason: str, group: str) -> None:
        """Publish a dead letter for ``message``, then commit ``message`` (it is settled: never delivered again)."""
        self._send([], [message], [(message.topic, dead_letter_record(message, reason, group))])

    def close(self) -> None:
        """Publish what is queued, wait for what is being written and commit it, then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=30)

    def _send(self, events: list[ev.Event], settled: list[Message], dead: list[DeadLetter]) -> None:
        with self._cond:
            if self.at_once and not self._queued():
                messages = _encoded(events)
                pending = self._pending_keys
                if not pending or not any(key in pending for key, _ in messages):
                    try:
                        written = self._start(messages, dead)
                    except Exception:  # the producer refused them (topic metadata unreachable...): the thread retries
                        log.exception("could not publish %d events; retrying", len(events))
                    else:
                        self._writes.append(_Write(written, events, messages, settled, dead))
                        for key, _ in messages:
                            pending[key] = pending.get(key, 0) + 1
                        self._cond.notify()
                        return
            self._events.extend(events)
            self._settled.extend(settled)
            self._dead.extend(dead)
            self._cond.notify()

    def _queued(self) -> bool:
        return bool(self._events or self._settled or self._dead)

    def _start(self, messages: list[tuple[str | None, bytes]], dead: list[DeadLetter]) -> Callable[[], None]:
        """Hand ``dead`` and ``messages`` to the bus; returns the waiter of that write."""
        batches: list[tuple[str, Sequence[tuple[str | None, bytes]]]] = []
        if dead:
            batches.append((names.DEAD_LETTER_TOPIC, [record for _, record in dead]))
        if messages:
            batches.append((names.EVENTS_TOPIC, messages))
        return self.bus.publish_many_nowait(batches)

    # ----- the background thread ----------------------------------------------------------------

    def _loop(self) -> None:
        retry_s = _RETRY_MIN_S
        while True:
            with self._cond:
                while not self._writes and not self._queued() and not self._closed:
                    self._cond.wait()
                if not self._writes and not self._queued():
                    return
                writes, self._writes = self._writes, []
                events: list[ev.Event] = []
                settled: list[Message] = []
                dead: list[DeadLetter] = []
                if not writes:
                    events, self._events = self._events, []
                    settled, self._settled = self._settled, []
                    dead, self._dead = self._dead, []
            if writes:  # what was queued meanwhile goes out after them (``_send`` queues behind a write)
                self._settle(writes)
                continue
            try:
                self._publish(events, settled, dead)
                retry_s = _RETRY_MIN_S
            except Exception:
                log.exception("could not publish %d events; retrying in %.2fs", len(events), retry_s)
                with self._cond:
                    self._events[:0] = events
                    self._settled[:0] = settled
                    self._dead[:0] = dead
                    self._cond.wait(retry_s)
                retry_s = min(_RETRY_MAX_S, retry_s * 2)

    def _settle(self, writes: list[_Write]) -> None:
        """At once: wait for ``writes`` in order, commit the messages of those written in one commit, and queue
        the others to be published again (ahead of anything queued meanwhile)."""
        done: list[_Write] = []
        failed: list[_Write] = []
        for write in writes:
            try:
                write.written()
                done.append(write)
            except Exception as exc:
                log.error("could not publish %d events; publishing them again: %s", len(write.events), exc)
                failed.append(write)
        with self._cond:
            if failed:
                self._events[:0] = [e for w in failed for e in w.events]
                self._settled[:0] = [m for w in failed for m in w.settled]
                self._dead[:0] = [d for w in failed for d in w.dead]
            pending = self._pending_keys
            for write in writes:
                for key, _ in write.messages:
                    left = pending[key] - 1
                    if left:
                        pending[key] = left
                    else:
                        del pending[key]
        if not done:
            return
        settled = [m for w in done for m in w.settled]
        assert self.consumer is not None
        if settled:
            try:
                self.consumer.commit(settled)
            except Exception:  # not committed: the messages come back to the group, their events are written
                log.exception("could not commit %d messages", len(settled))
            if self.on_committed is not None:
                self.on_committed(settled)
        counted([topic for w in done for topic, _ in w.dead])
        _count_published([e for w in done for e in w.events])

    def _publish(self, events: list[ev.Event], settled: list[Message], dead: list[DeadLetter]) -> None:
        if dead:
            self.bus.publish(names.DEAD_LETTER_TOPIC, [record for _, record in dead])
            counted([topic for topic, _ in dead])
            dead.clear()  # published: a retry of what follows must not publish them again
        messages = _encoded(events)
        if self.consumer is not None and settled:
            self.bus.publish_and_commit(names.EVENTS_TOPIC, messages, self.consumer, settled)
            if self.on_committed is not None:
                self.on_committed(settled)
        elif messages:
            self.bus.publish(names.EVENTS_TOPIC, messages)
        _count_published(events)


def _encoded(events: Sequence[ev.Event]) -> list[tuple[str | None, bytes]]:
    """``(key, value)`` messages of events: keyed by object id (run id for run events)."""
    encode = ev.encode
    return [(str(getattr(e, "object_id", e.run_id)), encode(e)) for e in events]


def _count_published(events: Sequence[ev.Event]) -> None:
    published: dict[str, int] = {}
    for event in events:
        kind = type(event).__name__
        published[kind] = published.get(kind, 0) + 1
    for kind, n in published.items():
        metrics.child(metrics.EVENTS_PUBLISHED, kind).inc(n)
