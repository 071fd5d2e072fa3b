"""Batched publishing of events, with commits of the messages they answer.

Callers hand the outbox events and the work messages those events settle; a background thread
publishes everything queued in one bus write (group commit), then commits the settled messages.
Under load batches grow by themselves; when idle each event goes out at once. A write that fails
(a locked or unreachable bus) is retried with backoff, in order, so no outcome is lost. Dead letters
(messages the caller could not use) go to ``sluice.dead-letters`` before the messages they settle are
committed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from sluice import events as ev
from sluice.bus import names
from sluice.bus.base import Bus, Consumer, Message
from sluice.bus.dead_letter import counted, dead_letter_record
from sluice.observability import metrics

log = logging.getLogger("sluice.outbox")
_RETRY_MIN_S = 0.05
_RETRY_MAX_S = 5.0


class Outbox:
    """Publishes events to ``sluice.events`` and commits settled messages on ``consumer``."""

    def __init__(
        self, bus: Bus, consumer: Consumer | None = None, on_committed: Callable[[list[Message]], None] | None = None
    ) -> None:
        self.bus = bus
        self.consumer = consumer
        self.on_committed = on_committed
        self._events: list[ev.Event] = []
        self._settled: list[Message] = []
        self._dead: list[tuple[str, tuple[str | None, bytes]]] = []  # (source topic, dead-letter record)
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="outbox", daemon=True)
        self._thread.start()

    def send(self, events: Sequence[ev.Event], settled: Sequence[Message]) -> None:
        with self._cond:
            self._events.extend(events)
            self._settled.extend(settled)
            self._cond.notify()

    def dead_letter(self, message: Message, reason: str, group: str) -> None:
        """Publish a dead letter for ``message``, then commit ``message`` (it is settled: never delivered again)."""
        record = dead_letter_record(message, reason, group)
        with self._cond:
            self._dead.append((message.topic, record))
            self._settled.append(message)
            self._cond.notify()

    def close(self) -> None:
        """Publish what is queued, then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        retry_s = _RETRY_MIN_S
        while True:
            with self._cond:
                while not self._events and not self._settled and not self._closed:
                    self._cond.wait()
                if not self._events and not self._settled:
                    return
                events, self._events = self._events, []
                settled, self._settled = self._settled, []
                dead, self._dead = self._dead, []
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

    def _publish(self, events: list[ev.Event], settled: list[Message], dead: list[tuple[str, tuple[str | None, bytes]]]) -> None:
        if dead:
            self.bus.publish(names.DEAD_LETTER_TOPIC, [record for _, record in dead])
            counted([topic for topic, _ in dead])
            dead.clear()  # published: a retry of what follows must not publish them again
        messages = [(str(getattr(e, "object_id", e.run_id)), ev.encode(e)) for e in events]
        if self.consumer is not None and settled:
            self.bus.publish_and_commit(names.EVENTS_TOPIC, messages, self.consumer, settled)
            if self.on_committed is not None:
                self.on_committed(settled)
        elif messages:
            self.bus.publish(names.EVENTS_TOPIC, messages)
        published: dict[str, int] = {}
        for event in events:
            kind = type(event).__name__
            published[kind] = published.get(kind, 0) + 1
        for kind, n in published.items():
            metrics.child(metrics.EVENTS_PUBLISHED, kind).inc(n)
