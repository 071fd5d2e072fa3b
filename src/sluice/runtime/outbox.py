"""Batched publishing of events, with commits of the messages they answer.

Callers hand the outbox events and the work messages those events settle; a background thread
publishes everything queued in one bus write (group commit), then commits the settled messages.
Under load batches grow by themselves; when idle each event goes out at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from sluice import events as ev
from sluice.bus.base import Bus, Consumer, Message
from sluice.observability import metrics

log = logging.getLogger("sluice.outbox")


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
        self._cond = threading.Condition()
        self._closed = False
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._loop, name="outbox", daemon=True)
        self._thread.start()

    def send(self, events: Sequence[ev.Event], settled: Sequence[Message]) -> None:
        with self._cond:
            self._events.extend(events)
            self._settled.extend(settled)
            self._idle.clear()
            self._cond.notify()

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until everything sent so far is published and committed."""
        self._idle.wait(timeout_s)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._events and not self._settled and not self._closed:
                    self._idle.set()
                    self._cond.wait()
                if self._closed and not self._events and not self._settled:
                    self._idle.set()
                    return
                events, self._events = self._events, []
                settled, self._settled = self._settled, []
            try:
                self._publish(events, settled)
            except Exception:
                log.exception("could not publish %d events; they will be redelivered", len(events))

    def _publish(self, events: list[ev.Event], settled: list[Message]) -> None:
        messages = [(str(getattr(e, "object_id", e.run_id)), ev.encode(e)) for e in events]
        if self.consumer is not None and settled:
            self.bus.publish_and_commit(ev.EVENTS_TOPIC, messages, self.consumer, settled)
            if self.on_committed is not None:
                self.on_committed(settled)
        elif messages:
            self.bus.publish(ev.EVENTS_TOPIC, messages)
        for event in events:
            metrics.child(metrics.EVENTS_PUBLISHED, ev.event_type(event)).inc()
