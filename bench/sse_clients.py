"""One process of SSE clients for bench/server.py: N raw HTTP/1.1 connections to ``/events/stream``.

The hot path is as cheap as Python allows, so that the clients are not what is measured: one ``epoll``
loop over N non-blocking sockets that only keeps every chunk it reads with two times, plus a byte search
for ``RunFinished``:

* when the chunk reached the client's socket: the kernel's receive timestamp (``SO_TIMESTAMPNS``; for a
  read spanning several packets, the last one's), which a busy machine cannot delay;
* when this process read it (``time.time()``), which includes waiting for a core.

Chunks are de-chunked (HTTP chunked encoding) and parsed into SSE frames only after the run; a frame's
times are those of the chunk that completed it.

The process talks to bench/server.py over stdin / stdout, one JSON object per line:

    out {"connected": n, "failed": k, "errors": [...]}   every connection has its response headers (200)
    in  go                                               the run is being started: CPU accounting starts
    out {"finished": true, ...}                          every connection has seen RunFinished
    in  report EXPECTED.json RECEIVED.bin                EXPECTED.json: {"ids": [the run's event ids on the bus]}
    out {"connections": ..., "frames": n, ...}           RECEIVED.bin: (id, socket time, read time) per frame, float64

    python bench/sse_clients.py --port 8000 --connections 125
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import resource
import selectors
import socket
import struct
import sys
import time
from array import array
from pathlib import Path
from typing import Any

FINISHED_MARK = b"RunFinished"
FRAME_END = re.compile(rb"\r?\n\r?\n")
SO_TIMESTAMPNS = 35  # Linux (asm-generic/socket.h); the control message type is the same number
TIMESPEC = struct.Struct("qq")
READ_SIZE = 1 << 18


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wait_seconds() -> float:
    """How long this (single-threaded) process was runnable but waiting for a core."""
    try:
        return int(Path("/proc/self/schedstat").read_text().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


class SseConnection:
    """One stream: every chunk read as ``(socket time, read time, bytes)``."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.sock = socket.create_connection((host, port), timeout=60)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        self.sock.sendall(request.encode())
        self.sock.setblocking(False)
        self.chunks: list[tuple[float, float, bytes]] = []
        self.headers: str | None = None
        self.tail = b""
        self.finished = False
        self.closed = False
        self.untimed = 0  # reads without a kernel timestamp (the read time stands in)

    def read(self) -> None:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(READ_SIZE, socket.CMSG_SPACE(TIMESPEC.size))
        except BlockingIOError:
            return
        except OSError:
            data, ancillary = b"", []
        read_at = time.time()
        if not data:
            self.closed = True
            return
        arrived_at = read_at
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= TIMESPEC.size:
                seconds, nanoseconds = TIMESPEC.unpack(payload[: TIMESPEC.size])
                arrived_at = seconds + nanoseconds / 1e9
                break
        else:
            self.untimed += 1
        self.chunks.append((arrived_at, read_at, data))
        if self.headers is None:
            head = b"".join(chunk for _, _, chunk in self.chunks)
            end = head.find(b"\r\n\r\n")
            if end >= 0:
                self.headers = head[:end].decode("latin-1")
        if not self.finished and (FINISHED_MARK in data or FINISHED_MARK in self.tail + data[: len(FINISHED_MARK)]):
            self.finished = True
        self.tail = data[-len(FINISHED_MARK) :]


def body_pieces(chunks: list[bytes]) -> tuple[bytes, list[int], list[int]]:
    """The response body, the end offset of each piece of it and the index of the chunk that completed it."""
    raw = b"".join(chunks)
    raw_ends: list[int] = []
    total = 0
    for data in chunks:
        total += len(data)
        raw_ends.append(total)
    head_end = raw.find(b"\r\n\r\n")
    if head_end < 0:
        return b"", [], []
    headers = raw[:head_end].lower()
    pos = head_end + 4
    parts: list[bytes] = []
    ends: list[int] = []
    completed_by: list[int] = []
    size_total = 0
    if b"transfer-encoding: chunked" in headers:
        while True:
            line_end = raw.find(b"\r\n", pos)
            if line_end < 0:
                break
            size = int(raw[pos:line_end].split(b";")[0], 16)
            start = line_end + 2
            if size == 0 or start + size > len(raw):
                break
            parts.append(raw[start : start + size])
            size_total += size
            ends.append(size_total)
            completed_by.append(bisect.bisect_right(raw_ends, start + size - 1))
            pos = start + size + 2
    else:
        for index, end in enumerate(raw_ends):
            if end <= pos:
                continue
            begin = max(pos, raw_ends[index - 1] if index else 0)
            parts.append(raw[begin:end])
            size_total += end - begin
            ends.append(size_total)
            completed_by.append(index)
    return b"".join(parts), ends, completed_by


def frames(chunks: list[bytes]) -> list[tuple[int, int]]:
    """``(id, index of the chunk that completed it)`` of every SSE frame with an id."""
    body, ends, completed_by = body_pieces(chunks)
    found: list[tuple[int, int]] = []
    start = 0
    for match in FRAME_END.finditer(body):
        frame = body[start : match.start()]
        start = match.end()
        for line in frame.splitlines():
            if line.startswith(b"id:"):
                found.append((int(line[3:].strip()), completed_by[bisect.bisect_right(ends, match.end() - 1)]))
                break
    return found


def report(connections: list[SseConnection], expected_file: Path, received_file: Path) -> dict[str, Any]:
    """Compare every connection's ids with the bus's; write ``(id, socket time, read time)`` for every frame."""
    expected_ids = set(json.loads(expected_file.read_text())["ids"])
    triples = array("d")
    complete = missing = extra = duplicates = 0
    first_problem = None
    last_frame_at = 0.0
    for index, connection in enumerate(connections):
        received = frames([data for _, _, data in connection.chunks])
        ids = [frame_id for frame_id, _ in received]
        unique = set(ids)
        lost, foreign, twice = len(expected_ids - unique), len(unique - expected_ids), len(ids) - len(unique)
        missing += lost
        extra += foreign
        duplicates += twice
        if lost == foreign == twice == 0:
            complete += 1
        elif first_problem is None:
            first_problem = f"connection {index}: {len(ids)} frames, {lost} missing, {foreign} unexpected, {twice} twice"
        for frame_id, chunk in received:
            arrived_at, read_at, _ = connection.chunks[chunk]
            triples.extend((frame_id, arrived_at, read_at))
            last_frame_at = max(last_frame_at, arrived_at)
    with received_file.open("wb") as out:
        triples.tofile(out)
    return {
        "connections": len(connections),
        "complete": complete,
        "missing": missing,
        "unexpected": extra,
        "duplicates": duplicates,
        "first_problem": first_problem,
        "frames": len(triples) // 3,
        "last_frame_at": last_frame_at,
        "untimed_reads": sum(c.untimed for c in connections),
        "reads": sum(len(c.chunks) for c in connections),
        "bytes": sum(len(data) for c in connections for _, _, data in c.chunks),
    }


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def serve_streams(args: argparse.Namespace) -> None:
    selector = selectors.DefaultSelector()
    connections: list[SseConnection] = []
    errors: list[str] = []
    for _ in range(args.connections):  # one after the other: simultaneous connects would overflow small backlogs
        try:
            connection = SseConnection(args.host, args.port, args.path)
        except OSError as error:
            errors.append(str(error))
            continue
        connections.append(connection)
        selector.register(connection.sock, selectors.EVENT_READ, connection)
    deadline = time.monotonic() + 60
    while any(c.headers is None and not c.closed for c in connections) and time.monotonic() < deadline:
        for key, _ in selector.select(1.0):
            key.data.read()
    for connection in list(connections):
        if connection.headers is None or not connection.headers.startswith("HTTP/1.1 200"):
            status = connection.headers.splitlines()[0] if connection.headers else "no response headers within 60 s"
            errors.append(f"GET {args.path}: {status}")
            selector.unregister(connection.sock)
            connection.sock.close()
            connections.remove(connection)
    emit({"connected": len(connections), "failed": len(errors), "errors": errors[:3]})

    stdin = sys.stdin.buffer.fileno()
    os.set_blocking(stdin, False)
    selector.register(stdin, selectors.EVENT_READ, None)
    pending = b""
    cpu_at_go = wall_at_go = wait_at_go = 0.0
    finished_sent = False
    while True:
        for key, _ in selector.select(1.0):
            if key.data is not None:
                key.data.read()
                if key.data.closed:
                    selector.unregister(key.data.sock)
                continue
            incoming = os.read(stdin, 65536)
            if not incoming:  # the parent is gone
                return
            pending += incoming
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                command = line.decode().split()
                if command and command[0] == "go":
                    cpu_at_go, wall_at_go, wait_at_go = cpu_seconds(), time.time(), wait_seconds()
                elif command and command[0] == "report":
                    cpu_s, wall_s = cpu_seconds() - cpu_at_go, time.time() - wall_at_go
                    for connection in connections:
                        connection.sock.close()
                    emit({**report(connections, Path(command[1]), Path(command[2])), "cpu_s": cpu_s, "wall_s": wall_s})
                    return
        if not finished_sent and wall_at_go and all(c.finished or c.closed for c in connections):
            finished_sent = True
            emit(
                {
                    "finished": True,
                    "all_saw_run_finished": all(c.finished for c in connections),
                    "cpu_s": cpu_seconds() - cpu_at_go,
                    "wait_s": wait_seconds() - wait_at_go,
                    "wall_s": time.time() - wall_at_go,
                }
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/events/stream")
    parser.add_argument("--connections", type=int, default=125)
    serve_streams(parser.parse_args())


if __name__ == "__main__":
    main()
