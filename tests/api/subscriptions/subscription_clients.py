"""Clients of the subscription transports for tests: a graphql-transport-ws client (the ``websockets`` library's
synchronous client, with time-outs), an SSE reader over httpx, and metric reads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from prometheus_client import REGISTRY
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

PROTOCOL = "graphql-transport-ws"
RECV_TIMEOUT_S = 20.0


class WsClient:
    """One graphql-transport-ws connection."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    def send(self, message: dict[str, Any]) -> None:
        self.ws.send(json.dumps(message))

    def recv(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(self.ws.recv(timeout=RECV_TIMEOUT_S))
        return message

    def init(self, payload: dict[str, Any] | None = None) -> None:
        self.send({"type": "connection_init", "payload": payload or {}})
        assert self.recv() == {"type": "connection_ack"}

    def subscribe(self, operation_id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        self.send({"id": operation_id, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}})

    def next_payload(self, operation_id: str) -> dict[str, Any]:
        """The payload of the next message, which must be a ``next`` of ``operation_id``."""
        message = self.recv()
        assert message.get("type") == "next" and message.get("id") == operation_id, message
        payload: dict[str, Any] = message["payload"]
        return payload

    def closed_with(self) -> tuple[int, str]:
        """Read until the server closes; its close code and reason."""
        try:
            while True:
                self.ws.recv(timeout=RECV_TIMEOUT_S)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "closed without a close frame"
            return closed.rcvd.code, closed.rcvd.reason


@contextmanager
def ws_client(base_url: str, path: str = "/graphql") -> Iterator[WsClient]:
    url = base_url.replace("http://", "ws://", 1) + path
    with connect(url, subprotocols=[Subprotocol(PROTOCOL)], open_timeout=RECV_TIMEOUT_S) as ws:
        yield WsClient(ws)


class SseReader:
    """Reads ``event:``/``data:`` frames of a text/event-stream response."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()

    def event(self) -> tuple[str, str]:
        """The next event's name and data (comments skipped)."""
        name, data = "message", ""
        for line in self.lines:
            if line.startswith(":"):
                continue
            if not line:
                if data or name != "message":
                    return name, data
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data += value
        raise AssertionError("the stream ended")

    def next_payload(self) -> dict[str, Any]:
        name, data = self.event()
        assert name == "next", (name, data)
        payload: dict[str, Any] = json.loads(data)
        return payload


def metric(name: str, **labels: str) -> float:
    """The current value of a Prometheus sample (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
