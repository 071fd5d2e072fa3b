"""Bus consumers of the change topics: one per topic, in its own thread, shared by every subscription.

A :class:`TopicFeed` joins a consumer group of its own (:func:`group_name`: one per server process, so
every replica sees every change) at the topic's end, then loops: wait for a message, keep reading for
:data:`WINDOW_S` more (a burst of 10,000 changes becomes one notice, not 10,000), and, for a feed whose
changes are applied into the served database by a sync, wait until that apply group's committed offset
(:meth:`Bus.committed`) passes the last message read: apply commits its offsets after its target
transaction, so the served database then holds every change of the window. Then it calls ``notify`` with
the topic. Messages are never decoded: any message on a table's topic (a row change, snapshot rows, a
schema change) means the table may have changed. The group never commits (nothing is to be resumed: a
restarted server runs each subscription again), so nothing builds up on the bus but the group's cursor
row (embedded) or offsets (Kafka, which expires them with the group).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from sluice.api.subscriptions import metrics
from sluice.api.subscriptions.sources import Feed
from sluice.bus.base import Bus, Consumer, Message

log = logging.getLogger("sluice.api.subscriptions")

WINDOW_S = 0.05
"""Seconds a feed keeps reading after the first message of a burst before notifying (the batching window)."""
POLL_S = 0.25
"""Seconds one poll waits for a first message (how soon a closed feed notices)."""
READ_MAX = 5000
"""Messages read per poll."""
APPLIED_FIRST_S = 0.01
APPLIED_MAX_S = 0.5
"""How often the apply group's committed offset is read while waiting for it: from 10 ms, backing off to 0.5 s."""
RETRY_S = 1.0


def group_name() -> str:
    """A consumer group of this server process alone: ``sluice-api.<host>.<pid>.<random>``."""
    return f"sluice-api.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"


class TopicFeed:
    """Reads one topic and calls ``notify(topic)`` after each window of changes (see the module)."""

    def __init__(self, bus: Bus, feed: Feed, group: str, notify: Callable[[str], None], window_s: float = WINDOW_S) -> None:
        self.bus = bus
        self.feed = feed
        self.group = group
        self.notify = notify
        self.window_s = window_s
        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._thread: threading.Thread | None = None
        self._messages = metrics.CHANGE_MESSAGES.labels(feed.topic)
        self._windows = metrics.CHANGE_WINDOWS.labels(feed.topic)

    @property
    def topic(self) -> str:
        return self.feed.topic

    def start(self) -> None:
        """Join at the topic's current end (blocking: Kafka takes a few seconds to join a group), then read in a
        thread. Changes published after this returns are noticed. Raises :class:`BusError`."""
        self.bus.seek(self.group, self.topic, self.bus.end_offset(self.topic))
        self._consumer = self.bus.consumer(self.group, self.topic, exclusive=True)
        self._thread = threading.Thread(target=self._run, name=f"live-{self.topic}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                last = self._window()
                if last is not None and self.feed.applied_by is not None:
                    self._wait_applied(last)
            except Exception as exc:  # the bus is away: keep trying, say it once
                if not failing:
                    log.warning("live subscriptions: reading %s failed (%s); retrying every %g s", self.topic, exc, RETRY_S)
                failing = True
                self._stop.wait(RETRY_S)
                continue
            if failing:
                log.warning("live subscriptions: reading %s again", self.topic)
                failing = False
            if last is not None and not self._stop.is_set():
                self._windows.inc()
                self.notify(self.topic)

    def _poll(self, timeout_s: float) -> list[Message]:
        assert self._consumer is not None
        messages = self._consumer.poll(READ_MAX, timeout_s)
        if messages:
            self._messages.inc(len(messages))
        return messages

    def _window(self) -> int | None:
        """The offset of the last message of one window, or None when nothing came within :data:`POLL_S`."""
        messages = self._poll(POLL_S)
        if not messages:
            return None
        last = messages[-1].offset
        deadline = time.monotonic() + self.window_s
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            more = self._poll(remaining)
            if more:
                last = more[-1].offset
        return last

    def _wait_applied(self, last: int) -> None:
        """Until the apply group has committed past ``last`` (or the feed closes)."""
        assert self.feed.applied_by is not None
        delay = APPLIED_FIRST_S
        while not self._stop.is_set():
            committed = self.bus.committed(self.feed.applied_by, self.topic)
            if committed is not None and committed > last:
                return
            self._stop.wait(delay)
            delay = min(APPLIED_MAX_S, delay * 1.5)


class Feeds:
    """The feeds of one server process by topic, started on first use and kept until :meth:`close`."""

    def __init__(self, bus: Bus, notify: Callable[[str], None], window_s: float = WINDOW_S) -> None:
        self.bus = bus
        self.notify = notify
        self.window_s = window_s
        self.group = group_name()
        self._feeds: dict[str, TopicFeed] = {}
        self._lock = threading.Lock()

    def ensure(self, feeds: list[Feed]) -> None:
        """Start the feeds not running yet (blocking; see :meth:`TopicFeed.start`). Raises :class:`BusError`."""
        with self._lock:
            for feed in feeds:
                if feed.topic in self._feeds:
                    continue
                topic_feed = TopicFeed(self.bus, feed, self.group, self.notify, self.window_s)
                topic_feed.start()
                self._feeds[feed.topic] = topic_feed

    def close(self) -> None:
        with self._lock:
            feeds, self._feeds = list(self._feeds.values()), {}
        for feed in feeds:
            feed.close()
