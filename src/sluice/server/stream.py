"""Server-Sent Events of ``sluice.events``: one hub thread tails the log and every client shares its frames.

* The hub thread reads the bus (``bus.read``, up to 2,000 events at a time), turns each event into an SSE
  frame ``id: <offset>\\nevent: <type>\\ndata: <json>\\n\\n`` once, and hands the batch to the event loop,
  which appends it to every subscriber's backlog and wakes it. It reads every 15 ms with few clients and
  less often with many (0.1 ms per client, at most every 50 ms), so the writes per second stay bounded.
* A client's generator writes everything waiting in one chunk per wake-up: with hundreds of clients and
  thousands of events a second, one write per event per client would be far too slow. Unfiltered
  clients share the joined bytes of a batch; clients with the same filter share the filtered bytes.
* The newest frames, up to ``ring_bytes`` (16 MiB, about 25,000 seed-002 events; at most ``ring_size`` frames),
  stay in memory for clients that reconnect with ``Last-Event-ID``; older events are replayed from the
  bus. Either way each event after that id is sent once.
* A client more than ``max_backlog`` frames or ``max_backlog_bytes`` behind is disconnected with a final
  comment instead of growing the server's memory; it may reconnect with its last id.

Everything but the hub thread and the bus replay runs on the event loop, so the hub's state needs no lock.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio.to_thread
import msgspec

from sluice.bounded import ByteRing
from sluice.bus import names
from sluice.bus.base import Bus, Message
from sluice.observability import metrics

log = logging.getLogger("sluice.server.stream")

KEEPALIVE = b": keep-alive\n\n"
HELLO = b"retry: 1000\n: connected\n\n"
SHUTTING_DOWN = b": the server is shutting down; reconnect with Last-Event-ID to resume\n\n"
READ_BATCH = 2000
FRAME_OVERHEAD = 360  # bytes a Frame costs besides its data (measured): the object, its offset, type and run id, the ring entry
RING_BYTES = 16 * 1024 * 1024
BACKLOG_BYTES = 64 * 1024 * 1024


def frame_size(frame: Frame) -> int:
    """What keeping ``frame`` in memory costs, in bytes (its data plus the objects around it)."""
    return len(frame.data) + FRAME_OVERHEAD


class _Head(msgspec.Struct):
    """The two fields the hub needs from an event (the rest is passed through as it is)."""

    type: str
    run_id: str = ""


_head_decoder = msgspec.json.Decoder(_Head)


@dataclass(frozen=True, slots=True)
class Frame:
    """One event as an SSE frame, with what filters look at."""

    offset: int
    type: str
    run_id: str
    data: bytes


def to_frame(message: Message) -> Frame | None:
    """The SSE frame of a bus message, or None for a message that is not an event."""
    try:
        head = _head_decoder.decode(message.value)
    except msgspec.DecodeError:
        log.warning("not streaming a malformed event at offset %d of %s", message.offset, message.topic)
        return None
    if not head.type.isidentifier():
        log.warning("not streaming an event with type %r at offset %d", head.type[:40], message.offset)
        return None
    value = message.value
    if b"\n" in value or b"\r" in value:  # one data: line per frame; Sluice's own encoder never writes newlines
        value = msgspec.json.encode(msgspec.json.decode(value))
    data = b"id: %d\nevent: %s\ndata: %s\n\n" % (message.offset, head.type.encode(), value)
    return Frame(message.offset, head.type, head.run_id, data)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a client wants: one run's, some types, or everything (None)."""

    run_id: str | None = None
    types: frozenset[str] | None = None

    @property
    def everything(self) -> bool:
        return self.run_id is None and self.types is None

    def accepts(self, frame: Frame) -> bool:
        return (self.run_id is None or frame.run_id == self.run_id) and (self.types is None or frame.type in self.types)


class Batch:
    """Frames read from the bus in one go; their joined bytes are computed once per filter."""

    __slots__ = ("_filtered", "frames", "joined", "next_offset")

    def __init__(self, frames: list[Frame], next_offset: int) -> None:
        self.frames = frames
        self.next_offset = next_offset
        self.joined = b"".join(frame.data for frame in frames)
        self._filtered: dict[EventFilter, tuple[bytes, int]] = {}

    def select(self, wanted: EventFilter, after: int) -> tuple[bytes, int]:
        """The bytes of the frames after offset ``after`` that ``wanted`` accepts, and how many frames."""
        if not self.frames:
            return b"", 0
        if after < self.frames[0].offset:
            if wanted.everything:
                return self.joined, len(self.frames)
            cached = self._filtered.get(wanted)
            if cached is None:
                chosen = [frame.data for frame in self.frames if wanted.accepts(frame)]
                cached = self._filtered[wanted] = (b"".join(chosen), len(chosen))
            return cached
        chosen = [frame.data for frame in self.frames if frame.offset > after and wanted.accepts(frame)]
        return b"".join(chosen), len(chosen)


class Subscriber:
    """One connected client: a backlog of chunks waiting to be written, and a wake-up event.

    Keep-alive: a timer per client fires every ``keepalive_s`` and asks for a comment when nothing was
    written since (cheaper than a timeout around every wait).
    """

    _ids = itertools.count(1)

    def __init__(
        self, wanted: EventFilter, after: int, max_backlog: int, keepalive_s: float = 15.0, max_backlog_bytes: int = BACKLOG_BYTES
    ) -> None:
        self.id = next(self._ids)
        self.wanted = wanted
        self.after = after
        self.max_backlog = max_backlog
        self.max_backlog_bytes = max_backlog_bytes
        self.backlog_bytes = 0
        self.keepalive_s = keepalive_s
        self.chunks: list[bytes] = []
        self.frames = 0
        self.wakeup = asyncio.Event()
        self.closing: bytes | None = None
        self.ping = False
        self.last_write = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def push(self, batch: Batch) -> None:
        if self.closing is not None:
            return
        chunk, count = batch.select(self.wanted, self.after)
        if count == 0:
            return
        self.chunks.append(chunk)
        self.frames += count
        self.backlog_bytes += len(chunk)
        if self.frames > self.max_backlog or self.backlog_bytes > self.max_backlog_bytes:
            behind = b"%d events" % self.max_backlog if self.frames > self.max_backlog else b"%d bytes" % self.max_backlog_bytes
            self.chunks.clear()
            self.frames = 0
            self.backlog_bytes = 0
            self.close(
                b": disconnected: this client fell more than %s behind; reconnect with Last-Event-ID to resume\n\n" % behind
            )
            return
        self.wakeup.set()

    def take(self) -> tuple[bytes, int]:
        """Everything waiting, as one chunk, and how many frames it holds."""
        if not self.chunks:
            return b"", 0
        chunk = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        count = self.frames
        self.chunks = []
        self.frames = 0
        self.backlog_bytes = 0
        return chunk, count

    def close(self, final_comment: bytes) -> None:
        """End the stream after what is waiting, with ``final_comment`` as its last bytes."""
        if self.closing is None:
            self.closing = final_comment
        self.wakeup.set()

    def wrote(self) -> None:
        """Something was written: the keep-alive clock restarts."""
        self.ping = False
        if self._loop is not None:
            self.last_write = self._loop.time()

    def start_keepalive(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.last_write = loop.time()
        self._timer = loop.call_at(self.last_write + self.keepalive_s, self._check_idle)

    def stop_keepalive(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_idle(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        due = self.last_write + self.keepalive_s
        if now >= due:
            self.ping = True
            self.wakeup.set()
            due = now + self.keepalive_s
        self._timer = self._loop.call_at(due, self._check_idle)


class EventHub:
    """Tails ``sluice.events`` in one thread and fans the frames out to subscribers on the event loop."""

    def __init__(
        self,
        bus: Bus,
        *,
        ring_size: int = 50_000,
        ring_bytes: int = RING_BYTES,
        max_backlog: int = 100_000,
        max_backlog_bytes: int = BACKLOG_BYTES,
        poll_interval_s: float = 0.015,
        max_interval_s: float = 0.05,
        per_client_s: float = 0.0001,
        read_batch: int = READ_BATCH,
    ) -> None:
        self.bus = bus
        self.max_backlog = max_backlog
        self.max_backlog_bytes = max_backlog_bytes
        self.poll_interval_s = poll_interval_s
        self.max_interval_s = max_interval_s
        self.per_client_s = per_client_s
        self.read_batch = read_batch
        self.ring: ByteRing[Frame] = ByteRing(ring_bytes, frame_size, max_items=ring_size)
        self.subscribers: dict[int, Subscriber] = {}
        self.next_offset = 0  # every event before it has been delivered to subscribers (or was before the hub)
        self.closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ----- life cycle (start and close on the event loop's thread) --------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start tailing from the end of the log (older events are replayed from the bus on request)."""
        self._loop = loop
        self.next_offset = self.bus.end_offset(names.EVENTS_TOPIC)
        self._thread = threading.Thread(target=self._run, args=(self.next_offset,), name="sse-hub", daemon=True)
        self._thread.start()

    def close_streams(self) -> None:
        """End every stream (on shutdown, so the server need not wait for clients to leave)."""
        self.closed = True
        for subscriber in list(self.subscribers.values()):
            subscriber.close(SHUTTING_DOWN)

    def stop(self) -> None:
        """Stop the hub thread (any thread)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the hub delivers on (None before start)."""
        return self._loop

    # ----- subscribers (event loop) ---------------------------------------------------------------

    @property
    def covered_from(self) -> int:
        """The oldest offset from which the ring and the live feed hold every event."""
        return self.ring[0].offset if self.ring else self.next_offset

    def subscribe(self, wanted: EventFilter, after: int | None, keepalive_s: float = 15.0) -> Subscriber:
        """A new subscriber; with ``after``, the frames of the ring after that offset are waiting already.

        The caller has replayed from the bus every event up to ``covered_from``.
        """
        subscriber = Subscriber(wanted, -1 if after is None else after, self.max_backlog, keepalive_s, self.max_backlog_bytes)
        subscriber.start_keepalive(asyncio.get_running_loop())
        if self.closed:
            subscriber.close(SHUTTING_DOWN)
            return subscriber
        if after is not None and self.ring:
            start = bisect.bisect_right(self.ring, after, key=lambda frame: frame.offset)
            backlog = list(itertools.islice(self.ring, start, None))
            if backlog:
                subscriber.push(Batch(backlog, backlog[-1].offset + 1))
        self.subscribers[subscriber.id] = subscriber
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subscriber.stop_keepalive()
        self.subscribers.pop(subscriber.id, None)

    def _deliver(self, batch: Batch) -> None:
        self.ring.extend(batch.frames)
        self.next_offset = batch.next_offset
        for subscriber in list(self.subscribers.values()):
            subscriber.push(batch)

    # ----- the hub thread -------------------------------------------------------------------------

    def _run(self, offset: int) -> None:
        try:
            self._tail(offset)
        except Exception:
            log.exception("the event stream stopped on an unexpected error; restart the server to stream events again")

    def _tail(self, offset: int) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                messages = self.bus.read(names.EVENTS_TOPIC, offset, self.read_batch)
            except Exception as exc:
                if not failing:
                    log.warning("cannot read %s for the event stream: %s; retrying every second", names.EVENTS_TOPIC, exc)
                failing = True
                self._stop.wait(1.0)
                continue
            if failing:
                log.warning("reading %s for the event stream again", names.EVENTS_TOPIC)
                failing = False
            if messages:
                offset = messages[-1].offset + 1
                batch = Batch([frame for message in messages if (frame := to_frame(message)) is not None], offset)
                if not self._hand_over(batch):
                    return
                if len(messages) >= self.read_batch:
                    continue
            self._stop.wait(self.interval_s())

    def interval_s(self) -> float:
        """Seconds between reads: longer with more clients, as each delivery writes once to every client."""
        return min(self.max_interval_s, max(self.poll_interval_s, len(self.subscribers) * self.per_client_s))

    def _hand_over(self, batch: Batch) -> bool:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._deliver, batch)
        except RuntimeError:  # the loop is closed: the server is gone
            return False
        return True


async def event_stream(hub: EventHub, wanted: EventFilter, last_event_id: int | None, keepalive_s: float) -> AsyncIterator[bytes]:
    """The bytes of one client's stream: events after ``last_event_id`` (or from now), then live events."""
    metrics.SSE_CLIENTS.inc()
    subscriber: Subscriber | None = None
    try:
        yield HELLO
        after = last_event_id
        if after is not None:
            while after + 1 < hub.covered_from:
                boundary = hub.covered_from
                messages = await anyio.to_thread.run_sync(hub.bus.read, names.EVENTS_TOPIC, after + 1, hub.read_batch)
                older = [message for message in messages if message.offset < boundary]
                frames = [frame for message in older if (frame := to_frame(message)) is not None and wanted.accepts(frame)]
                if frames:
                    metrics.SSE_EVENTS_SENT.inc(len(frames))
                    yield b"".join(frame.data for frame in frames)
                after = older[-1].offset if older else boundary - 1
        subscriber = hub.subscribe(wanted, after, keepalive_s)
        while True:
            subscriber.wakeup.clear()
            chunk, count = subscriber.take()
            if count:
                metrics.SSE_EVENTS_SENT.inc(count)
                subscriber.wrote()
                yield chunk
            elif subscriber.closing is not None:
                yield subscriber.closing
                return
            elif subscriber.ping:
                subscriber.wrote()
                yield KEEPALIVE
            else:
                await subscriber.wakeup.wait()
    finally:
        if subscriber is not None:
            hub.unsubscribe(subscriber)
        metrics.SSE_CLIENTS.dec()
