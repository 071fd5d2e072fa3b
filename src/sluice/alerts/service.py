"""The alert service: tails ``sluice.events`` in its own consumer group and sends what the rules match.

``AlertService(project, bus, state, clock=...)`` with :meth:`~AlertService.start` / :meth:`~AlertService.stop`
runs one thread: it polls the ``alerts`` consumer group, turns each event into alerts
(:mod:`sluice.alerts.triggers`), routes and throttles them (:mod:`sluice.alerts.routing`), delivers them
(each channel's :meth:`~sluice.alerts.channels.Channel.deliver`, with its retries) and only then commits
the events; every ``alerts.sla_interval_s`` seconds it looks for runs past a deadline (:mod:`sluice.alerts.sla`).
It never runs on a server's event loop and never raises out of its thread: a failed delivery is logged and
counted in ``sluice_alerts_sent_total{status="failed"}``.

Delivery is at least once per event: the offset is committed after sending, so a process that dies between
sending and committing sends those alerts again when it restarts, and a restart otherwise repeats nothing.
A group that never committed starts at the end of the log (old events raise no alerts). Throttling counts and
the deadlines already alerted live in the state store (``StateStore.claim_alert``): every process alerting for the
project shares them (two ``sluice serve`` send a missed deadline once, and a repeat throttled whichever process
sees it), and a restart keeps them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

import msgspec

from sluice.alerts.channels import Channel, DeliveryError, open_channel
from sluice.alerts.metrics import ALERTS_SENT, ALERTS_THROTTLED
from sluice.alerts.model import Alert, AlertsSpec, Rule, Subject
from sluice.alerts.routing import Router, StoredThrottle
from sluice.alerts.sla import SlaWatch
from sluice.alerts.triggers import Triggers
from sluice.bus.base import Bus, Consumer, Message
from sluice.bus.names import ALERTS_GROUP, EVENTS_TOPIC
from sluice.events import RunFinished, decode
from sluice.project.model import Project
from sluice.state.base import StateStore

log = logging.getLogger("sluice.alerts")

POLL_BATCH = 200
LEASE_S = 300.0
"""Seconds the group's lease covers a delivered batch: longer than any delivery with its retries."""


class AlertService:
    """Alerts of ``project`` (its ``alerts:`` section) from the events on ``bus``; ``state`` tells runs' details.

    ``clock``: epoch seconds (throttle windows, deadlines; tests pass a fake one). ``channels``: channel
    objects by name instead of those the project's plugins build (tests). ``sleep``: between delivery attempts.
    Raises ValueError when the project has no ``alerts:``, PluginError when a channel's plugin cannot be loaded.
    """

    def __init__(
        self,
        project: Project,
        bus: Bus,
        state: StateStore,
        *,
        clock: Callable[[], float] = time.time,
        channels: Mapping[str, Channel] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        group: str = ALERTS_GROUP,
    ) -> None:
        if project.alerts is None:
            raise ValueError(f"project {project.name} has no alerts: section")
        self.spec: AlertsSpec = project.alerts
        self.project = project
        self.bus = bus
        self.state = state
        self.clock = clock
        self.sleep = sleep
        self.group = group
        self.channels: dict[str, Channel] = (
            dict(channels) if channels is not None else {name: open_channel(c) for name, c in self.spec.channels.items()}
        )
        for name in self.channels:  # series at zero, so a dashboard's rate() sees the first alert
            ALERTS_SENT.labels(name, "ok")
            ALERTS_SENT.labels(name, "failed")
        self.triggers = Triggers(project, state, self.spec.ui_url)
        self.router = Router(self.spec.rules, StoredThrottle(state, project.name))
        self.slas = SlaWatch(self.spec.slas, self.triggers, state)
        self.sent: list[tuple[str, Alert]] = []
        """The last alerts sent, ``(channel, alert)``, newest last (at most 100; for tests and ``/health``)."""
        self._consumer: Consumer | None = None
        self._held: list[Message] = []
        """Events of a batch whose handling failed (the state store away): handled again at the next poll, before any
        newer one (their lease would hand them out again only after :data:`LEASE_S`)."""
        self._next_sla = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ----- lifecycle ---------------------------------------------------------------------------------

    def open(self) -> Consumer:
        """Join the consumer group (at the end of the log the first time). Idempotent."""
        if self._consumer is None:
            if self.bus.committed(self.group, EVENTS_TOPIC) is None:
                self.bus.seek(self.group, EVENTS_TOPIC, self.bus.end_offset(EVENTS_TOPIC))
            self._consumer = self.bus.consumer(self.group, EVENTS_TOPIC, lease_s=LEASE_S)
        return self._consumer

    def start(self) -> None:
        """Join the group and start the service's thread."""
        self.open()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (after the delivery in progress) and leave the group."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():  # a delivery still retrying: its events stay uncommitted, sent again next time
                log.warning("alert service: a delivery still going after %.0f s; leaving it to end with the process", timeout_s)
                return
            self._thread = None
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll(timeout_s=1.0)
                if self.clock() >= self._next_sla:
                    self.check_slas()
            except Exception:  # the bus or state store is down: say so, wait, try again
                log.exception("alert service: cannot read events; trying again in 5 s")
                self._stop.wait(5.0)

    # ----- work --------------------------------------------------------------------------------------

    def poll(self, timeout_s: float = 0.0) -> int:
        """Handle the events waiting (up to one batch, waiting up to ``timeout_s`` for the first), send their
        alerts, then commit them. Returns how many alerts were sent."""
        consumer = self.open()
        messages, self._held = self._held or consumer.poll(POLL_BATCH, timeout_s), []
        sent = 0
        for index, message in enumerate(messages):
            try:
                sent += self.handle(message)
            except Exception:  # this event and the rest of the batch: again at the next poll, in order
                if index:
                    consumer.commit(messages[:index])
                self._held = messages[index:]
                raise
        consumer.commit(messages)
        return sent

    def handle(self, message: Message) -> int:
        """The alerts of one event message, sent; how many were sent."""
        try:
            event = decode(message.value)
        except (msgspec.DecodeError, ValueError):  # another version's event: nothing to alert on
            return 0
        raised = self.triggers.alerts(event)
        try:
            if isinstance(event, RunFinished):
                raised += self.slas.finished(event.run_id, event.ts.timestamp())
            return self.dispatch(raised)
        except Exception:  # not alerted: the event must not count as seen when it is handled again
            self.triggers.forget(event)
            raise

    def check_slas(self) -> int:
        """Look for running runs past a deadline now; how many alerts were sent."""
        now = self.clock()
        self._next_sla = now + self.spec.sla_interval_s
        return self.dispatch(self.slas.due(now))

    def dispatch(self, raised: list[tuple[Alert, list[Subject]]]) -> int:
        """Route each alert through the rules, throttle, deliver; how many deliveries succeeded."""
        sent = 0
        now = self.clock()
        for alert, subjects in raised:
            held = self.router.held
            routed = self.router.route(alert, subjects, now)
            if self.router.held > held:
                ALERTS_THROTTLED.labels(alert.trigger).inc(self.router.held - held)
            for rule, out in routed:
                sent += self.deliver(rule, out)
        return sent

    def deliver(self, rule: Rule, alert: Alert) -> int:
        """Send ``alert`` to every channel of ``rule``; a failure is logged and counted, never raised."""
        sent = 0
        for name in rule.channels:
            channel = self.channels.get(name)
            if channel is None:
                continue
            try:
                channel.deliver(alert, self.sleep)
            except DeliveryError as exc:
                ALERTS_SENT.labels(name, "failed").inc()
                log.error("alert %r (%s) not delivered to channel %s: %s", alert.title, alert.trigger, name, exc)
                continue
            except Exception:
                ALERTS_SENT.labels(name, "failed").inc()
                log.exception("alert %r (%s) not delivered to channel %s", alert.title, alert.trigger, name)
                continue
            ALERTS_SENT.labels(name, "ok").inc()
            self.sent.append((name, alert))
            del self.sent[:-100]
            sent += 1
        return sent
