"""The embedded bus: a durable log in one SQLite file that several processes on a machine can share.

Layout (one file, WAL mode):

* ``messages(offset, topic, key, value, ts)``: every message; ``offset`` is a single sequence over
  all topics, so offsets increase within a topic (with gaps, as Kafka's may) and give a global order;
* ``group_cursors(grp, topic, fetched)``: the highest offset handed to each consumer group;
* ``leases(grp, topic, offset, consumer, expires, deliveries)``: messages handed out and not yet
  committed. A lease that expires (its consumer died or stalled) makes the message deliverable again,
  which gives at-least-once delivery across processes. A consumer joining a group also frees the
  leases of consumers on this host whose process is gone, so a killed worker's objects come back
  at once instead of after the lease.

Messages older than the retention (7 days by default; ``sqlite:///bus.db?retention_days=30``, 0 to keep
everything) are deleted when a bus is opened; the newest message is always kept so offsets never restart.

A publisher that consumes the topic itself (the coordinator on ``sluice.events``) names its group in
``publish_many(..., own_group=...)``: an exclusive consumer of that group in this process then reads
past those messages without fetching them (their offsets are kept in memory until it has passed them).

Consumers in this process are woken as soon as a message is published here; consumers in other
processes notice new data by polling ``PRAGMA data_version`` (cheap): every 2 ms while messages flow,
backing off to every 50 ms when idle.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from functools import cache, partial
from typing import Any

from sluice.bus.base import Bus, Consumer, Message
from sluice.errors import BusError
from sluice.observability import metrics
from sluice.pids import pid_alive
from sluice.sqlite_file import SqliteFile

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    offset INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    key TEXT,
    value BLOB NOT NULL,
    ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_topic ON messages(topic);
CREATE TABLE IF NOT EXISTS group_cursors (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    fetched INTEGER NOT NULL,
    PRIMARY KEY (grp, topic)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    offset INTEGER NOT NULL,
    consumer TEXT NOT NULL,
    expires REAL NOT NULL,
    deliveries INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, offset)
) WITHOUT ROWID;
"""

_HOST = socket.gethostname()
DEFAULT_RETENTION_DAYS = 7.0
_wakeups: dict[str, threading.Condition] = {}
_wakeups_lock = threading.Lock()
# Checking for other processes' messages: every 2 ms while busy, backing off to 50 ms when idle.
_POLL_MIN_S = 0.002
_POLL_MAX_S = 0.05
_SELECT_NEW = (
    "SELECT ?, 0, offset, key, value, ts, 1 FROM messages WHERE topic = ? AND offset > ? AND offset < ? ORDER BY offset LIMIT ?"
)
"""A topic's messages in an offset range, as :class:`Message` fields (``partition`` 0, ``deliveries`` 1)."""
_NO_BOUND = 2**63 - 1
_message: Callable[[Sequence[Any]], Message] = partial(tuple.__new__, Message)
"""A :class:`Message` from a row of its seven fields, without a Python-level call per row."""
_ROWS_PER_STATEMENT = (128, 64, 32, 16, 8, 4, 2, 1)
"""Rows are written by statements of these many rows each (``VALUES (...), (...)``, ``IN (...)``): one
statement of 128 rows costs about two thirds of 128 single-row ones, and only these eight shapes of each
statement are prepared (``sqlite3`` keeps them). 128 rows of 4 values stay under the 999 variables older
SQLite builds allow in one statement."""


def _statement_sizes(rows: int) -> Iterator[int]:
    """Split ``rows`` into sizes taken from ``_ROWS_PER_STATEMENT``, largest first."""
    for size in _ROWS_PER_STATEMENT:
        while rows >= size:
            yield size
            rows -= size


@cache
def _insert_messages_sql(rows: int) -> str:
    return "INSERT INTO messages(topic, key, value, ts) VALUES " + ", ".join(["(?, ?, ?, ?)"] * rows)


@cache
def _delete_leases_sql(rows: int) -> str:
    return f"DELETE FROM leases WHERE grp = ? AND topic = ? AND offset IN ({', '.join(['?'] * rows)})"


def _wakeup_for(path: str) -> threading.Condition:
    with _wakeups_lock:
        return _wakeups.setdefault(path, threading.Condition())


class EmbeddedBus(Bus):
    """A :class:`Bus` over a local SQLite file. Safe to share between threads and processes."""

    ordered_publish_many = True  # one transaction log: a publish_many is one transaction

    def __init__(self, path: str | os.PathLike[str], retention_days: float = DEFAULT_RETENTION_DAYS) -> None:
        self.db = SqliteFile(path, "the embedded bus", BusError, _SCHEMA)
        self.path = self.db.path
        self.url = f"sqlite:///{self.path}"
        self._wakeup = _wakeup_for(str(self.path))
        self.local_version = 0
        # (group, topic): offset ranges (first, last) published with own_group=group, in offset order
        self._own: dict[tuple[str, str], deque[tuple[int, int]]] = {}
        self._own_lock = threading.Lock()
        if retention_days > 0:
            self.prune(time.time() - retention_days * 86400)

    def prune(self, before_ts: float) -> int:
        """Delete messages published before ``before_ts`` (epoch seconds), as Kafka's retention does; return how many."""
        with self.db.write() as conn:
            # Offsets grow with time, so the scan stops at the first message to keep.
            row = conn.execute("SELECT offset FROM messages WHERE ts >= ? ORDER BY offset LIMIT 1", (before_ts,)).fetchone()
            keep = row[0] if row else int(conn.execute("SELECT COALESCE(MAX(offset), 0) FROM messages").fetchone()[0])
            deleted = conn.execute("DELETE FROM messages WHERE offset < ?", (keep,)).rowcount
            conn.execute("DELETE FROM leases WHERE offset < ?", (keep,))
        return int(deleted)

    def prune_topic(self, topic: str, below_offset: int, dry_run: bool = False) -> int:
        """Delete ``topic``'s messages at offsets below ``below_offset`` (what history pruning keeps of the event
        log: see ``runtime/retention.py``); return how many (would) go."""
        where = "FROM messages WHERE topic = ? AND offset < ?"
        if dry_run:
            return int(self.db.conn().execute(f"SELECT COUNT(*) {where}", (topic, below_offset)).fetchone()[0])
        with self.db.write() as conn:
            return int(conn.execute(f"DELETE {where}", (topic, below_offset)).rowcount)

    def first_offset_since(self, topic: str, ts: float) -> int:
        """The offset of ``topic``'s first message published at or after ``ts`` (epoch seconds), or the end offset."""
        row = self.db.conn().execute("SELECT MIN(offset) FROM messages WHERE topic = ? AND ts >= ?", (topic, ts)).fetchone()
        return int(row[0]) if row and row[0] is not None else self.end_offset(topic)

    def _notify(self) -> None:
        self.local_version += 1
        with self._wakeup:
            self._wakeup.notify_all()

    def wait(self, timeout_s: float, woken: threading.Event | None = None) -> None:
        """Sleep until a message is published in this process, ``woken`` is set, or ``timeout_s`` passes."""
        with self._wakeup:
            if woken is None or not woken.is_set():
                self._wakeup.wait(timeout_s)

    def wake_waiters(self) -> None:
        """Wake every :meth:`wait` of this process (they check what they wait for)."""
        with self._wakeup:
            self._wakeup.notify_all()

    @staticmethod
    def _insert(conn: sqlite3.Connection, batches: Sequence[tuple[str, Sequence[tuple[str | None, bytes]]]]) -> int:
        """Append the messages of ``(topic, [(key, value)])`` batches inside the caller's transaction; return the
        last offset. SQLite numbers them as the old ``MAX(offset) + 1`` did: one after the highest, without gaps."""
        ts = time.time()
        values = [v for topic, messages in batches for key, value in messages for v in (topic, key, value, ts)]
        start = 0
        last: int | None = None
        for size in _statement_sizes(len(values) // 4):  # rows of one statement are numbered in their order
            last = conn.execute(_insert_messages_sql(size), values[start : start + 4 * size]).lastrowid
            start += 4 * size
        return int(conn.execute("SELECT last_insert_rowid()").fetchone()[0]) if last is None else last

    @staticmethod
    def _count(batches: Sequence[tuple[str, Sequence[tuple[str | None, bytes]]]]) -> None:
        """Count messages written, once their transaction is committed (and show the topic's errors, at zero)."""
        for topic, messages in batches:
            if messages:
                metrics.child(metrics.BUS_MESSAGES_PRODUCED, topic).inc(len(messages))
                metrics.child(metrics.BUS_PRODUCE_ERRORS, topic)

    def publish(self, topic: str, messages: Sequence[tuple[str | None, bytes]]) -> list[int]:
        if not messages:
            return []
        with self.db.write() as conn:
            last = self._insert(conn, [(topic, messages)])
        self._notify()
        self._count([(topic, messages)])
        return list(range(last - len(messages) + 1, last + 1))

    def publish_many(
        self, batches: Sequence[tuple[str, Sequence[tuple[str | None, bytes]]]], *, own_group: str | None = None
    ) -> None:
        if not any(messages for _, messages in batches):
            return
        with self.db.write() as conn:
            last = self._insert(conn, batches)
            if own_group is not None:
                # Before the commit: no consumer of the group can read these messages before it knows to skip them.
                self._record_own(own_group, batches, last)
        self._notify()
        self._count(batches)

    def _record_own(self, group: str, batches: Sequence[tuple[str, Sequence[tuple[str | None, bytes]]]], last: int) -> None:
        """Remember the offsets ``group`` need not read: ``batches`` were numbered in order, ending at ``last``."""
        first = last - sum(len(messages) for _, messages in batches) + 1
        with self._own_lock:
            for topic, messages in batches:
                if messages:
                    ranges = self._own.get((group, topic))
                    if ranges is None:
                        ranges = self._own[group, topic] = deque()
                    ranges.append((first, first + len(messages) - 1))
                    first += len(messages)

    def _next_own(self, group: str, topic: str, after: int) -> tuple[int, int] | None:
        """The first range of ``group``'s own messages on ``topic`` that ends after offset ``after`` (older ones are
        forgotten), or None."""
        with self._own_lock:
            ranges = self._own.get((group, topic))
            while ranges and ranges[0][1] <= after:
                ranges.popleft()
            return ranges[0] if ranges else None

    def _forget_own(self, group: str) -> None:
        with self._own_lock:
            for key in [key for key in self._own if key[0] == group]:
                del self._own[key]

    def publish_and_commit(
        self, topic: str, messages: Sequence[tuple[str | None, bytes]], consumer: Consumer, settled: Sequence[Message]
    ) -> None:
        if not isinstance(consumer, EmbeddedConsumer) or consumer.bus is not self:
            super().publish_and_commit(topic, messages, consumer, settled)
            return
        with self.db.write() as conn:
            if messages:
                self._insert(conn, [(topic, messages)])
            if settled:
                consumer._settle(conn, settled)
        if messages:
            self._notify()
            self._count([(topic, messages)])

    def consumer(
        self, group: str, topic: str, lease_s: float = 30.0, consumer_id: str | None = None, exclusive: bool = False
    ) -> EmbeddedConsumer:
        consumer_id = consumer_id or f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        return EmbeddedConsumer(self, group, topic, lease_s, consumer_id, exclusive)

    def read(self, topic: str, from_offset: int = 0, max_messages: int = 1000) -> list[Message]:
        rows = self.db.conn().execute(
            "SELECT offset, key, value, ts FROM messages WHERE topic = ? AND offset >= ? ORDER BY offset LIMIT ?",
            (topic, from_offset, max_messages),
        )
        return [Message(topic, 0, offset, key, value, ts) for offset, key, value, ts in rows]

    def seek(self, group: str, topic: str, offset: int) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM leases WHERE grp = ? AND topic = ?", (group, topic))
            conn.execute(
                "INSERT INTO group_cursors(grp, topic, fetched) VALUES (?, ?, ?) "
                "ON CONFLICT(grp, topic) DO UPDATE SET fetched = excluded.fetched",
                (group, topic, offset - 1),
            )

    def end_offset(self, topic: str) -> int:
        row = self.db.conn().execute("SELECT MAX(offset) FROM messages WHERE topic = ?", (topic,)).fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def lag(self, group: str, topic: str) -> int:
        conn = self.db.conn()
        fetched_row = conn.execute("SELECT fetched FROM group_cursors WHERE grp = ? AND topic = ?", (group, topic)).fetchone()
        fetched = -1 if fetched_row is None else int(fetched_row[0])
        unread = conn.execute("SELECT COUNT(*) FROM messages WHERE topic = ? AND offset > ?", (topic, fetched)).fetchone()[0]
        leased = conn.execute("SELECT COUNT(*) FROM leases WHERE grp = ? AND topic = ?", (group, topic)).fetchone()[0]
        return int(unread) + int(leased)

    def committed(self, group: str, topic: str) -> int | None:
        """The group's cursor plus one, or its oldest leased (uncommitted) offset when it holds leases."""
        conn = self.db.conn()
        row = conn.execute("SELECT fetched FROM group_cursors WHERE grp = ? AND topic = ?", (group, topic)).fetchone()
        if row is None:
            return None
        leased = conn.execute("SELECT MIN(offset) FROM leases WHERE grp = ? AND topic = ?", (group, topic)).fetchone()[0]
        return int(leased) if leased is not None else int(row[0]) + 1

    def data_version(self) -> int:
        return int(self.db.conn().execute("PRAGMA data_version").fetchone()[0])

    def ping(self) -> None:
        self.db.ping()

    def close(self) -> None:
        self.db.close()


class EmbeddedConsumer(Consumer):
    """One member of a consumer group over the embedded log."""

    def __init__(
        self, bus: EmbeddedBus, group: str, topic: str, lease_s: float, consumer_id: str, exclusive: bool = False
    ) -> None:
        self.bus = bus
        self.exclusive = exclusive
        self.group = group
        self.topic = topic
        self.lease_s = lease_s
        self.consumer_id = consumer_id
        self._fetched = -1
        self._next_expiry_check = 0.0
        self._drained_version: tuple[int, int] = (-1, -1)
        self._idle_wait = _POLL_MIN_S
        self._woken = threading.Event()
        self._consumed = metrics.child(metrics.BUS_MESSAGES_CONSUMED, metrics.group_label(group), topic)
        # a series at zero: the embedded log has no fetch errors
        metrics.child(metrics.BUS_CONSUME_ERRORS, metrics.group_label(group))
        self._join()

    def _join(self) -> None:
        with self.bus.db.write() as conn:
            conn.execute("INSERT OR IGNORE INTO group_cursors(grp, topic, fetched) VALUES (?, ?, -1)", (self.group, self.topic))
            if self.exclusive:
                cursor = "SELECT fetched FROM group_cursors WHERE grp = ? AND topic = ?"
                self._fetched = int(conn.execute(cursor, (self.group, self.topic)).fetchone()[0])
                return
            holders = conn.execute("SELECT DISTINCT consumer FROM leases WHERE grp = ? AND topic = ?", (self.group, self.topic))
            dead = [holder for (holder,) in holders if _is_dead_local(holder)]
            conn.executemany(
                "UPDATE leases SET expires = 0 WHERE grp = ? AND topic = ? AND consumer = ?",
                [(self.group, self.topic, d) for d in dead],
            )

    def poll(self, max_messages: int = 500, timeout_s: float = 0.0) -> list[Message]:
        deadline = time.monotonic() + timeout_s
        while True:
            messages = self._fetch(max_messages)
            if messages:
                self._idle_wait = _POLL_MIN_S
                self._consumed.inc(len(messages))
                return messages
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._woken.is_set():
                self._woken.clear()
                return messages
            self.bus.wait(min(remaining, self._idle_wait), self._woken)
            self._idle_wait = min(_POLL_MAX_S, self._idle_wait * 2)

    def wakeup(self) -> None:
        self._woken.set()
        self.bus.wake_waiters()

    def _fetch(self, max_messages: int) -> list[Message]:
        if self.exclusive:
            return self._read_on(max_messages)
        conn = self.bus.db.conn()
        now = time.time()
        expiry_due = now >= self._next_expiry_check
        version = (self.bus.data_version(), self.bus.local_version)
        if not expiry_due and version == self._drained_version:
            return []
        if not expiry_due:
            newer = conn.execute(
                "SELECT 1 FROM messages WHERE topic = ? AND offset > ? LIMIT 1", (self.topic, self._fetched)
            ).fetchone()
            if newer is None:
                self._drained_version = version
                return []
        messages: list[Message] = []
        expires = now + self.lease_s
        with self.bus.db.write() as conn:
            if expiry_due:
                self._next_expiry_check = now + min(1.0, self.lease_s / 4)
                messages.extend(self._take_expired(conn, now, expires, max_messages))
            if len(messages) < max_messages:
                messages.extend(self._take_new(conn, expires, max_messages - len(messages)))
        if len(messages) < max_messages:
            self._drained_version = version
        return messages

    def _read_on(self, max_messages: int) -> list[Message]:
        """Exclusive mode: the next messages after our position, without leases (the group's offset moves on commit).

        The group's own messages (published with ``own_group``) are passed over without being read: every message
        before such a range was committed before it, so once those are read the position jumps past the range."""
        version = (self.bus.data_version(), self.bus.local_version)
        if version == self._drained_version:
            return []
        conn = self.bus.db.conn()
        messages: list[Message] = []
        while True:
            own = self.bus._next_own(self.group, self.topic, self._fetched)
            if own is not None and own[0] <= self._fetched:  # inside the range (a cursor set by a seek)
                self._fetched = own[1]
                continue
            wanted = max_messages - len(messages)
            rows = conn.execute(
                _SELECT_NEW, (self.topic, self.topic, self._fetched, _NO_BOUND if own is None else own[0], wanted)
            ).fetchall()
            if rows:
                messages += map(_message, rows)
                self._fetched = rows[-1][2]
            if len(rows) == wanted:
                return messages
            if own is None:
                self._drained_version = version
                return messages
            self._fetched = own[1]

    def _take_expired(self, conn: sqlite3.Connection, now: float, expires: float, limit: int) -> list[Message]:
        rows = conn.execute(
            "SELECT l.offset, m.key, m.value, m.ts, l.deliveries FROM leases l JOIN messages m ON m.offset = l.offset "
            "WHERE l.grp = ? AND l.topic = ? AND l.expires < ? ORDER BY l.offset LIMIT ?",
            (self.group, self.topic, now, limit),
        ).fetchall()
        conn.executemany(
            "UPDATE leases SET consumer = ?, expires = ?, deliveries = deliveries + 1 WHERE grp = ? AND topic = ? AND offset = ?",
            [(self.consumer_id, expires, self.group, self.topic, row[0]) for row in rows],
        )
        return [Message(self.topic, 0, offset, key, value, ts, deliveries + 1) for offset, key, value, ts, deliveries in rows]

    def _take_new(self, conn: sqlite3.Connection, expires: float, limit: int) -> list[Message]:
        fetched = conn.execute(
            "SELECT fetched FROM group_cursors WHERE grp = ? AND topic = ?", (self.group, self.topic)
        ).fetchone()[0]
        rows = conn.execute(_SELECT_NEW, (self.topic, self.topic, fetched, _NO_BOUND, limit)).fetchall()
        if rows:
            # The rows just read, in the same transaction: every message of the topic up to the last of them.
            conn.execute(
                "INSERT OR REPLACE INTO leases(grp, topic, offset, consumer, expires, deliveries) "
                "SELECT ?, ?, offset, ?, ?, 1 FROM messages WHERE topic = ? AND offset > ? AND offset <= ?",
                (self.group, self.topic, self.consumer_id, expires, self.topic, fetched, rows[-1][2]),
            )
            fetched = rows[-1][2]
            conn.execute("UPDATE group_cursors SET fetched = ? WHERE grp = ? AND topic = ?", (fetched, self.group, self.topic))
        self._fetched = fetched
        return list(map(_message, rows))

    def commit(self, messages: Sequence[Message], wait: bool = True) -> None:
        """Settle ``messages`` in the log (a local write: ``wait`` changes nothing)."""
        if not messages:
            return
        with self.bus.db.write() as conn:
            self._settle(conn, messages)

    def _settle(self, conn: sqlite3.Connection, messages: Sequence[Message]) -> None:
        """Mark ``messages`` processed inside the caller's transaction."""
        if self.exclusive:
            conn.execute(
                "UPDATE group_cursors SET fetched = MAX(fetched, ?) WHERE grp = ? AND topic = ?",
                (max(m.offset for m in messages), self.group, self.topic),
            )
            return
        offsets = [m.offset for m in messages]
        start = 0
        for size in _statement_sizes(len(offsets)):
            conn.execute(_delete_leases_sql(size), (self.group, self.topic, *offsets[start : start + size]))
            start += size

    def extend(self, messages: Sequence[Message]) -> None:
        if not messages or self.exclusive:
            return
        expires = time.time() + self.lease_s
        with self.bus.db.write() as conn:
            conn.executemany(
                "UPDATE leases SET expires = ? WHERE grp = ? AND topic = ? AND offset = ? AND consumer = ?",
                [(expires, self.group, self.topic, m.offset, self.consumer_id) for m in messages],
            )

    def close(self) -> None:
        if self.exclusive:
            self.bus._forget_own(self.group)
            return
        with self.bus.db.write() as conn:
            conn.execute(
                "UPDATE leases SET expires = 0 WHERE grp = ? AND topic = ? AND consumer = ?",
                (self.group, self.topic, self.consumer_id),
            )


def _is_dead_local(consumer_id: str) -> bool:
    host, _, rest = consumer_id.partition(":")
    pid_text = rest.partition(":")[0]
    return host == _HOST and pid_text.isdigit() and int(pid_text) != os.getpid() and not pid_alive(int(pid_text))
