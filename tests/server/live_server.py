"""A real Sluice server (uvicorn on a free loopback port, in a thread of the test process) and an SSE reader."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from helpers import wait_for
from sluice.project.model import Project
from sluice.server.app import create_app
from sluice.server.serve import SluiceServer, bind, server_config, url_of
from sluice.server.services import ServerSettings, Services

FINAL_RUN_STATUSES = ("succeeded", "failed", "cancelled")


INSTANT = ServerSettings(simulate=True, delay_scale=0.0)
"""Simulated objects that take no time: runs finish as fast as the server can go."""


class LiveServer:
    """``with LiveServer(project, settings) as server: httpx.get(server.url + "/health")``."""

    def __init__(self, project: Project, settings: ServerSettings | None = None) -> None:
        self.services = Services(project, settings or ServerSettings())
        self.app = create_app(self.services)
        self.sock = bind("127.0.0.1", 0)
        self.url = url_of(self.sock)
        self.server = SluiceServer(server_config(self.app), self.services)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_for(lambda: self.server.started or not self.thread.is_alive(), 60, "the server to start")
        assert self.server.started, "the server did not start (see the log above)"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        assert not self.thread.is_alive(), "the server did not stop"

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def in_loop(self, what: Any) -> Any:
        """Call ``what()`` on the server's event loop and return its result."""
        loop = self.services.hub.loop
        assert loop is not None

        async def call() -> Any:
            return what()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(30)

    def task_count(self) -> int:
        return int(self.in_loop(lambda: len(asyncio.all_tasks())))

    def subscriber_count(self) -> int:
        return int(self.in_loop(lambda: len(self.services.hub.subscribers)))

    def start_run(self, client: httpx.Client, **body: Any) -> str:
        answer = client.post("/orchestrate", json=body or None)
        assert answer.status_code == 202, answer.text
        run_id: str = answer.json()["run_id"]
        return run_id

    def wait_run(self, client: httpx.Client, run_id: str, timeout_s: float = 120) -> dict[str, Any]:
        """Poll GET /runs/{id} until the run is final and no longer active; return its detail."""
        detail: dict[str, Any] = {}

        def done() -> bool:
            nonlocal detail
            detail = client.get(f"/runs/{run_id}").json()
            return detail["status"] in FINAL_RUN_STATUSES and self.services.runs.active is None

        wait_for(done, timeout_s, f"run {run_id} to finish")
        return detail


@dataclass
class SseEvent:
    id: int | None
    event: str | None
    data: dict[str, Any] | None


@dataclass
class SseItem:
    """A dispatched event, or a comment line (``comment`` set)."""

    event: SseEvent | None = None
    comment: str | None = None


def sse_items(lines: Iterator[str]) -> Iterator[SseItem]:
    """Parse Server-Sent Events from text lines (as httpx's ``iter_lines`` gives them)."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "data" in fields or "id" in fields:
                data = json.loads(fields["data"]) if "data" in fields else None
                event_id = int(fields["id"]) if "id" in fields else None
                yield SseItem(event=SseEvent(event_id, fields.get("event"), data))
            fields = {}
            continue
        if line.startswith(":"):
            yield SseItem(comment=line[1:].strip())
            continue
        name, _, value = line.partition(":")
        fields[name] = value[1:] if value.startswith(" ") else value


def read_events(response: httpx.Response, until: str | None = None, count: int | None = None) -> list[SseEvent]:
    """Events from an open stream until one of type ``until`` (included) or ``count`` events."""
    events: list[SseEvent] = []
    for item in sse_items(response.iter_lines()):
        if item.event is None:
            continue
        events.append(item.event)
        if (until is not None and item.event.event == until) or (count is not None and len(events) >= count):
            break
    return events
