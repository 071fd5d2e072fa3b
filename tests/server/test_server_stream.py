"""GET /events/stream over a real server: ids, Last-Event-ID resume (from memory and from the bus), none twice,
keep-alive, filters, slow clients, shutdown, and 1,000 connect/disconnect cycles that leave nothing behind."""

from __future__ import annotations

import gc
import threading
import tracemalloc

import httpx
from live_server import INSTANT, LiveServer, SseEvent, read_events, sse_items

from helpers import events_of, wait_for
from sluice import events as ev
from sluice.bus.base import Message
from sluice.project.model import Project
from sluice.server.services import ServerSettings
from sluice.server.stream import Batch, EventFilter, Subscriber, frame_size, to_frame


def logged(project: Project, run_id: str) -> list[tuple[int, str]]:
    """(offset, type) of every event of the run, from the bus."""
    return [(position, type(event).__name__) for position, event in events_of(project, run_id)]


def pairs(events: list[SseEvent]) -> list[tuple[int, str]]:
    out = []
    for e in events:
        assert e.id is not None and e.event is not None and e.data is not None
        assert e.data["type"] == e.event
        out.append((e.id, e.event))
    return out


def test_live_stream_has_every_event_of_a_run_with_its_offset_as_id(server: LiveServer, seed: Project) -> None:
    with server.client() as client, client.stream("GET", "/events/stream") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-cache"
        run_id = server.start_run(client)
        received = read_events(stream, until="RunFinished")
    assert pairs(received) == logged(seed, run_id)
    assert all(e.data is not None and e.data["run_id"] == run_id for e in received)


def test_last_event_id_resumes_after_that_event_none_twice(server: LiveServer, seed: Project) -> None:
    with server.client() as client:
        run_id = server.wait_run(client, server.start_run(client))["run_id"]
        log = logged(seed, run_id)
        cut = log[10][0]
        with client.stream("GET", "/events/stream", headers={"Last-Event-ID": str(cut)}) as stream:
            assert pairs(read_events(stream, until="RunFinished")) == log[11:]
        with client.stream("GET", "/events/stream", params={"last_event_id": cut}) as stream:
            assert pairs(read_events(stream, until="RunFinished")) == log[11:]


def test_resume_older_than_the_buffer_is_replayed_from_the_bus(seed: Project) -> None:
    settings = ServerSettings(simulate=True, delay_scale=0.0, ring_size=5)
    with LiveServer(seed, settings) as server, server.client() as client:
        first = server.wait_run(client, server.start_run(client))["run_id"]
        second = server.wait_run(client, server.start_run(client, force=True))["run_id"]
        log = logged(seed, first) + logged(seed, second)
        assert len(log) > 100 and len(server.services.hub.ring) == 5
        cut = log[3][0]
        with client.stream("GET", "/events/stream", headers={"Last-Event-ID": str(cut)}) as stream:
            received = pairs(read_events(stream, count=len(log) - 4))
        assert received == log[4:]
        everything = client.stream("GET", "/events/stream", params={"last_event_id": -1})
        with everything as stream:
            assert pairs(read_events(stream, count=len(log))) == log


def test_a_client_that_reconnects_mid_run_misses_nothing(seed: Project) -> None:
    with LiveServer(seed, ServerSettings(simulate=True, delay_scale=0.2)) as server, server.client() as client:
        received: list[SseEvent] = []
        with client.stream("GET", "/events/stream") as stream:
            run_id = server.start_run(client, force=True)
            received += read_events(stream, count=8)
        assert server.services.runs.active is not None, "the run should still be going"
        while not received or received[-1].event != "RunFinished":
            last = received[-1].id
            with client.stream("GET", "/events/stream", headers={"Last-Event-ID": str(last)}) as stream:
                received += read_events(stream, count=7, until="RunFinished")
        assert pairs(received) == logged(seed, run_id)


def test_keepalive_comments_while_idle(server: LiveServer) -> None:
    with server.client() as client, client.stream("GET", "/events/stream", params={"keepalive_s": 0.1}) as stream:
        comments = []
        for item in sse_items(stream.iter_lines()):
            assert item.event is None
            comments.append(item.comment)
            if comments.count("keep-alive") == 3:
                break
    assert comments[0] == "connected"


def test_filters_by_run_and_type(server: LiveServer, seed: Project) -> None:
    with server.client() as client:
        first = server.wait_run(client, server.start_run(client))["run_id"]
        second = server.wait_run(client, server.start_run(client, force=True))["run_id"]
        second_log = logged(seed, second)
        with client.stream("GET", "/events/stream", params={"run_id": second, "last_event_id": -1}) as stream:
            assert pairs(read_events(stream, until="RunFinished")) == second_log
        runs_only = [e for e in logged(seed, first) + second_log if e[1] in ("RunStarted", "RunFinished")]
        query = "type=RunStarted&type=RunFinished&last_event_id=-1"
        with client.stream("GET", f"/events/stream?{query}") as stream:
            assert pairs(read_events(stream, count=4)) == runs_only
        with client.stream("GET", "/events/stream", params={"type": "RunStarted,RunFinished", "last_event_id": -1}) as stream:
            assert pairs(read_events(stream, count=4)) == runs_only
        # Live, with a filter: only the third run's loads.
        with client.stream("GET", "/events/stream", params={"type": "ObjectLoaded,RunFinished"}) as stream:
            third = server.start_run(client, force=True)
            live = pairs(read_events(stream, until="RunFinished"))
        assert live == [e for e in logged(seed, third) if e[1] in ("ObjectLoaded", "RunFinished")]


def frame(offset: int, kind: str = "ObjectLoaded", run_id: str = "r") -> Message:
    value = ev.encode(ev.ObjectLoaded(run_id=run_id, object_id=1001, stage="ingest")) if kind == "ObjectLoaded" else b"{}"
    return Message(ev.EVENTS_TOPIC, 0, offset, "1001", value, 0.0)


def test_a_client_too_far_behind_is_disconnected_with_a_comment() -> None:
    frames = [f for f in (to_frame(frame(i)) for i in range(1, 26)) if f is not None]
    subscriber = Subscriber(EventFilter(), after=-1, max_backlog=20)
    subscriber.push(Batch(frames[:10], 11))
    assert subscriber.frames == 10 and subscriber.closing is None
    subscriber.push(Batch(frames[10:], 26))
    assert subscriber.closing is not None and b"more than 20 events behind" in subscriber.closing
    assert subscriber.take() == (b"", 0)  # the backlog is dropped, not kept
    subscriber.push(Batch(frames[:1], 2))
    assert subscriber.frames == 0


def test_messages_that_are_not_events_are_not_streamed() -> None:
    assert to_frame(Message(ev.EVENTS_TOPIC, 0, 7, None, b"not json", 0.0)) is None
    assert to_frame(Message(ev.EVENTS_TOPIC, 0, 8, None, b'{"type": "a\\nb", "run_id": "r"}', 0.0)) is None
    multi_line = to_frame(Message(ev.EVENTS_TOPIC, 0, 9, None, b'{"type": "Future",\n "run_id": "r"}', 0.0))
    assert multi_line is not None and multi_line.data == b'id: 9\nevent: Future\ndata: {"type":"Future","run_id":"r"}\n\n'


def test_shutdown_ends_open_streams(seed: Project) -> None:
    server = LiveServer(seed, INSTANT).__enter__()
    items: list[str | None] = []

    def listen() -> None:
        with httpx.Client(timeout=30) as client, client.stream("GET", server.url + "/events/stream") as stream:
            items.extend(item.comment for item in sse_items(stream.iter_lines()))

    listener = threading.Thread(target=listen)
    listener.start()
    wait_for(lambda: server.subscriber_count() == 1, 30, "the client to connect")
    server.stop()
    listener.join(30)
    assert not listener.is_alive()
    assert items[0] == "connected" and items[-1] is not None and "shutting down" in items[-1]


def test_connect_disconnect_cycles_leave_no_task_subscriber_or_memory_behind(server: LiveServer) -> None:
    url = server.url + "/events/stream"

    def cycles(count: int) -> None:
        with httpx.Client(timeout=30) as client:
            for _ in range(count):
                with client.stream("GET", url) as stream:
                    lines = stream.iter_lines()
                    assert next(lines) == "retry: 1000"

    def settled(tasks: int) -> bool:
        return server.subscriber_count() == 0 and server.task_count() <= tasks

    cycles(50)  # warm up: imports, caches, thread pools
    wait_for(lambda: server.subscriber_count() == 0, 30, "subscribers to leave")
    tasks = server.task_count()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        cycles(1000)
        wait_for(lambda: settled(tasks), 60, "tasks and subscribers to return to their baseline")
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert server.subscriber_count() == 0
    assert server.task_count() <= tasks
    assert growth < 2_000_000, f"memory grew by {growth} bytes over 1,000 connections"


def test_memory_kept_across_many_runs_stays_under_its_byte_limits(seed: Project) -> None:
    """A long-lived server: the SSE ring, the cached run views and the SQLite connections stay bounded."""
    limits = ServerSettings(simulate=True, delay_scale=0.0, ring_bytes=40_000, view_cache_bytes=48_000)
    with LiveServer(seed, limits) as server, server.client() as client:
        runs = []
        for _ in range(40):
            run_id = server.wait_run(client, server.start_run(client, force=True))["run_id"]
            runs.append(run_id)
            assert client.get("/runs").status_code == 200  # caches every recent run's statuses
        hub, views = server.services.hub, server.services.run_views
        assert 0 < hub.ring.bytes <= 40_000
        assert sum(frame_size(frame) for frame in hub.ring) == hub.ring.bytes
        assert 0 < len(hub.ring) < len(logged(seed, runs[-1])) * len(runs) // 10  # older events are left to the bus
        assert 0 < views.cached_bytes <= 48_000
        backends = server.services.backends
        bus_file, state_file = backends.bus.db, backends.state.db  # type: ignore[attr-defined]
        threads = threading.active_count()
        assert bus_file.open_connections <= threads and state_file.open_connections <= threads
        # An old run is still answered (from the state store), and the stream replays it from the bus.
        assert client.get(f"/runs/{runs[0]}").json()["status"] == "succeeded"


def test_a_client_too_many_bytes_behind_is_disconnected_too() -> None:
    frames = [f for f in (to_frame(frame(i)) for i in range(1, 11)) if f is not None]
    subscriber = Subscriber(EventFilter(), after=-1, max_backlog=1000, max_backlog_bytes=sum(len(f.data) for f in frames[:5]))
    subscriber.push(Batch(frames[:5], 6))
    assert subscriber.closing is None
    subscriber.push(Batch(frames[5:], 11))
    assert subscriber.closing is not None and b"bytes behind" in subscriber.closing
    assert subscriber.take() == (b"", 0)
