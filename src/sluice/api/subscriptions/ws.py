"""GraphQL over WebSocket, the ``graphql-transport-ws`` sub-protocol (graphql-ws's PROTOCOL.md), at the GraphQL path.

- The handshake must offer the sub-protocol ``graphql-transport-ws``; otherwise it is refused (HTTP 403).
- ``connection_init`` within ``api.limits.subscriptions.init_timeout_s`` (else close ``4408``); a second one
  closes ``4429``. Its ``payload`` carries the credentials, as headers would: ``{"Authorization": "Bearer
  ..."}``, ``{"X-API-Key": "..."}`` or ``{"headers": {...}}`` (names in any case; they override the
  handshake's own headers). :meth:`Gate.admit` checks them once per connection (``operation="subscription"``,
  rate limits included): a refusal closes ``4401`` (bad or missing credentials), ``4403`` (role forbidden) or
  ``4429`` (over a rate limit); else ``connection_ack``. Each ``subscribe`` is admitted again with the same
  credentials (one more request against the rate limits, and a token that expired since is refused): a
  refusal answers that operation's ``error`` (code ``rate-limited``, ``invalid-jwt``...) and the socket stays open.
- ``subscribe`` before the ack closes ``4401``; a reused active id closes ``4409``; a malformed message
  closes ``4400``. A subscription operation streams ``next`` messages (its result, then each changed
  result, :mod:`.live`) until the client sends ``complete``; a query or mutation answers one ``next`` and
  ``complete``. An operation refused before running (invalid document, permissions, a table without change
  events, more than ``per_connection`` operations) answers ``error`` with
  ``[{"message", "extensions": {"code"}}]`` and the socket stays open.
- ``ping`` is answered ``pong`` (with the same payload); ``pong`` is ignored.

One writer task sends everything, in order; a subscription's results wait in a one-slot mailbox, so a slow
client gets the latest result rather than a growing queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Mapping
from typing import Any

import anyio.to_thread
from graphql import OperationType
from starlette.websockets import WebSocket, WebSocketDisconnect

from sluice.api.execute import request_parts, run_request
from sluice.api.gate import DataApiError
from sluice.api.principal import Principal
from sluice.api.service import DataApi
from sluice.api.subscriptions.live import Subscription, SubscriptionHub

log = logging.getLogger("sluice.api.subscriptions")

PROTOCOL = "graphql-transport-ws"
CLOSE_FOR_STATUS = {401: 4401, 403: 4403, 429: 4429}
"""The close code of a :meth:`Gate.admit` refusal by its HTTP status (others: 4400)."""
MAX_REASON_BYTES = 123
"""A close frame's reason holds at most 123 bytes (RFC 6455, 5.5)."""
GOING_AWAY = 1001


def credentials(payload: Mapping[str, Any] | None) -> dict[str, str]:
    """Header-like credentials of a ``connection_init`` payload: its string values and those of its ``headers``
    object, by lower-case name."""
    found: dict[str, str] = {}
    if not payload:
        return found
    nested = payload.get("headers")
    items = list(payload.items()) + (list(nested.items()) if isinstance(nested, Mapping) else [])
    for name, value in items:
        if isinstance(name, str) and isinstance(value, str):
            found[name.lower()] = value
    return found


def reason(text: str) -> str:
    """``text`` cut to fit a close frame."""
    data = text.encode()
    if len(data) <= MAX_REASON_BYTES:
        return text
    return data[: MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."


def _error_payload(exc: DataApiError) -> list[dict[str, Any]]:
    return [{"message": str(exc), "extensions": {"code": exc.code}}]


class Connection:
    """One socket speaking graphql-transport-ws (see the module)."""

    def __init__(self, websocket: WebSocket, api: DataApi, hub: SubscriptionHub) -> None:
        self.ws = websocket
        self.api = api
        self.hub = hub
        self.headers = {name.lower(): value for name, value in websocket.headers.items()}
        self.address = websocket.client.host if websocket.client else ""
        self.principal: Principal | None = None
        self.credentials: dict[str, str] = {}
        """The handshake's headers with ``connection_init``'s credentials over them: each ``subscribe`` is admitted with them."""
        self.initialised = False
        self.operations: dict[str, Subscription | None] = {}
        self.outbox: deque[str] = deque()
        self.mailbox: dict[str, bytes] = {}
        self.wake = asyncio.Event()
        self.closing: tuple[int, str] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(self) -> None:
        if PROTOCOL not in self.ws.scope.get("subprotocols", []):
            await self.ws.close(code=4406, reason=f"the sub-protocol must be {PROTOCOL}")
            return
        await self.ws.accept(subprotocol=PROTOCOL)
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.api.settings.limits.subscriptions.init_timeout_s, self._init_timeout)
        writer = loop.create_task(self._write())
        try:
            await self._read()
        except WebSocketDisconnect:
            pass
        finally:
            timer.cancel()
            for task in list(self._tasks):
                task.cancel()
            for operation in self.operations.values():
                if operation is not None:
                    self.hub.unsubscribe(operation)
            self.operations.clear()
            if self.closing is None:
                writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError, WebSocketDisconnect, RuntimeError):
                await asyncio.wait_for(writer, 5)

    # Sending (one writer task).

    def send(self, message: dict[str, Any]) -> None:
        self.outbox.append(json.dumps(message, ensure_ascii=False, separators=(",", ":")))
        self.wake.set()

    def close(self, code: int, text: str) -> None:
        """Close the socket after what is queued (the reader stops reading)."""
        if self.closing is None:
            self.closing = (code, reason(text))
        self.wake.set()

    def _result(self, operation_id: str, body: bytes) -> None:
        if operation_id in self.operations:
            self.mailbox[operation_id] = body
            self.wake.set()

    async def _write(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.outbox:
                await self.ws.send_text(self.outbox.popleft())
            while self.mailbox:
                operation_id, body = next(iter(self.mailbox.items()))
                del self.mailbox[operation_id]
                head = '{"id":' + json.dumps(operation_id, ensure_ascii=False) + ',"type":"next","payload":'
                await self.ws.send_text(head + body.decode() + "}")
            if self.closing is not None:
                await self.ws.close(code=self.closing[0], reason=self.closing[1])
                return

    # Receiving.

    async def _read(self) -> None:
        while self.closing is None:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            try:
                parsed = json.loads(text) if text is not None else None
            except (ValueError, RecursionError):
                parsed = None
            kind = parsed.get("type") if isinstance(parsed, dict) else None
            if not isinstance(kind, str):
                self.close(4400, "a message must be a JSON object with a 'type'")
                return
            assert isinstance(parsed, dict)
            await self._handle(kind, parsed)

    async def _handle(self, kind: str, message: dict[str, Any]) -> None:
        if kind == "connection_init":
            await self._init(message.get("payload"))
        elif kind == "ping":
            pong: dict[str, Any] = {"type": "pong"}
            if isinstance(message.get("payload"), dict):
                pong["payload"] = message["payload"]
            self.send(pong)
        elif kind == "pong":
            return
        elif kind == "subscribe":
            self._subscribe(message)
        elif kind == "complete":
            operation_id = message.get("id")
            if isinstance(operation_id, str):
                self._complete(operation_id)
        else:
            self.close(4400, f"unknown message type {kind[:40]!r}")

    def _init_timeout(self) -> None:
        if not self.initialised:
            self.close(4408, "Connection initialisation timeout")

    async def _init(self, payload: Any) -> None:
        if self.initialised:
            self.close(4429, "Too many initialisation requests")
            return
        self.initialised = True
        if payload is not None and not isinstance(payload, dict):
            self.close(4400, "the connection_init payload must be an object")
            return
        headers = {**self.headers, **credentials(payload)}
        self.credentials = headers
        try:
            self.principal = await anyio.to_thread.run_sync(self.api.gate.admit, headers, self.address, "subscription")
        except DataApiError as exc:
            self.close(CLOSE_FOR_STATUS.get(exc.status, 4400), str(exc))
            return
        self.send({"type": "connection_ack"})

    def _subscribe(self, message: dict[str, Any]) -> None:
        if self.principal is None:
            self.close(4401, "Unauthorized")
            return
        operation_id, payload = message.get("id"), message.get("payload")
        if not isinstance(operation_id, str) or not operation_id or not isinstance(payload, dict):
            self.close(4400, "subscribe needs an 'id' string and a 'payload' object")
            return
        if operation_id in self.operations:
            self.close(4409, f"Subscriber for {operation_id} already exists")
            return
        most = self.hub.per_connection
        if len(self.operations) >= most:
            error = DataApiError(f"at most {most} operations may run on one connection", code="too-many-subscriptions")
            self.send({"id": operation_id, "type": "error", "payload": _error_payload(error)})
            return
        self.operations[operation_id] = None
        task = asyncio.get_running_loop().create_task(self._operate(operation_id, payload, self.principal))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _operate(self, operation_id: str, payload: dict[str, Any], principal: Principal) -> None:
        try:
            principal = await anyio.to_thread.run_sync(self.api.gate.admit, self.credentials, self.address, "subscription")
            text, variables, name = request_parts(payload)
            kind = await self.hub.kind(text, name)
            if kind != OperationType.SUBSCRIPTION:
                await self._single(operation_id, payload, principal)
                return
            subscription = await self.hub.subscribe(
                principal,
                text,
                variables,
                name,
                lambda body: self._result(operation_id, body),
                lambda: self.close(GOING_AWAY, "the server is stopping"),
            )
        except DataApiError as exc:
            if self.operations.pop(operation_id, 0) is None:
                self.send({"id": operation_id, "type": "error", "payload": _error_payload(exc)})
            return
        if operation_id in self.operations:
            self.operations[operation_id] = subscription
        else:  # completed by the client while starting
            self.hub.unsubscribe(subscription)

    async def _single(self, operation_id: str, payload: dict[str, Any], principal: Principal) -> None:
        answer = await anyio.to_thread.run_sync(run_request, self.api, payload, principal, "POST")
        if self.operations.pop(operation_id, 0) is not None:
            return  # completed by the client meanwhile
        if answer.status == 200:
            head = '{"id":' + json.dumps(operation_id, ensure_ascii=False) + ',"type":"next","payload":'
            self.outbox.append(head + answer.body.decode() + "}")
            self.send({"id": operation_id, "type": "complete"})
        else:
            errors = json.loads(answer.body).get("errors", [])
            self.send({"id": operation_id, "type": "error", "payload": errors})

    def _complete(self, operation_id: str) -> None:
        operation = self.operations.pop(operation_id, None)
        self.mailbox.pop(operation_id, None)
        if operation is not None:
            self.hub.unsubscribe(operation)


async def graphql_ws(websocket: WebSocket, api: DataApi, hub: SubscriptionHub) -> None:
    """Serve one WebSocket of the GraphQL path (see the module)."""
    await Connection(websocket, api, hub).serve()
