"""GraphQL over Server-Sent Events, graphql-sse's "distinct connections mode" (its PROTOCOL.md), at the GraphQL path.

A ``POST`` (JSON body) or ``GET`` (``?query=...&variables=...``) with ``Accept: text/event-stream`` answers
``text/event-stream``: ``event: next`` frames whose ``data`` is an ExecutionResult (``{"data": ...}`` or
``{"errors": [...]}``), then ``event: complete`` when the operation is done. A subscription streams its
result and each changed result (:mod:`.live`) until the client closes the connection; a query or mutation
sends one ``next`` and ``complete``. Problems found before running (an invalid document, permissions, a
table without change events) are a ``next`` with ``errors`` then ``complete``, as the protocol asks, so an
``EventSource`` can show them. Credentials are the request's headers; a refusal of :meth:`Gate.admit` is an
ordinary JSON answer with its status (401, 403, 429) before any stream starts. ``: keep-alive`` comments
every :data:`KEEPALIVE_S` seconds while idle. When the server stops, streams end without ``complete``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from graphql import OperationType
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from sluice.api.execute import answer_error, request_parts, run_request
from sluice.api.gate import DataApiError
from sluice.api.principal import Principal
from sluice.api.service import DataApi
from sluice.api.subscriptions.live import SubscriptionHub

KEEPALIVE_S = 15.0
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
COMPLETE = b"event: complete\ndata:\n\n"
KEEPALIVE = b": keep-alive\n\n"


def wants_events(request: Request) -> bool:
    """The client asked for an event stream (``Accept: text/event-stream``)."""
    return "text/event-stream" in request.headers.get("accept", "")


def next_frame(body: bytes) -> bytes:
    """An ``event: next`` frame holding ``body`` (JSON) on one ``data:`` line."""
    if b"\n" in body or b"\r" in body:
        body = json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":")).encode()
    return b"event: next\ndata: " + body + b"\n\n"


class _Mailbox:
    """The latest result not yet written, and whether the stream must end."""

    def __init__(self) -> None:
        self.latest: bytes | None = None
        self.ended = False
        self.wake = asyncio.Event()

    def put(self, body: bytes) -> None:
        self.latest = body
        self.wake.set()

    def end(self) -> None:
        self.ended = True
        self.wake.set()


async def _events(
    api: DataApi, hub: SubscriptionHub, body: Any, principal: Principal, keepalive_s: float
) -> AsyncIterator[bytes]:
    try:
        text, variables, name = request_parts(body)
        kind = await hub.kind(text, name)
        if kind != OperationType.SUBSCRIPTION:
            answer = await anyio.to_thread.run_sync(run_request, api, body, principal, "POST")
            yield next_frame(answer.body)
            yield COMPLETE
            return
        mailbox = _Mailbox()
        subscription = await hub.subscribe(principal, text, variables, name, mailbox.put, mailbox.end)
    except DataApiError as exc:
        yield next_frame(answer_error(exc).body)
        yield COMPLETE
        return
    try:
        while True:
            try:
                await asyncio.wait_for(mailbox.wake.wait(), keepalive_s)
            except TimeoutError:
                yield KEEPALIVE
                continue
            mailbox.wake.clear()
            if mailbox.latest is not None:
                latest, mailbox.latest = mailbox.latest, None
                yield next_frame(latest)
            if mailbox.ended:
                return
    finally:
        hub.unsubscribe(subscription)


async def sse_answer(
    request: Request, api: DataApi, hub: SubscriptionHub, body: Any, keepalive_s: float = KEEPALIVE_S
) -> Response:
    """The answer to a GraphQL request asking for ``text/event-stream`` (see the module)."""
    headers = {name.lower(): value for name, value in request.headers.items()}
    address = request.client.host if request.client else ""
    try:
        principal = await anyio.to_thread.run_sync(api.gate.admit, headers, address, "subscription")
    except DataApiError as exc:
        answer = answer_error(exc)
        return Response(answer.body, status_code=answer.status, media_type="application/json", headers=answer.headers)
    return StreamingResponse(_events(api, hub, body, principal, keepalive_s), media_type="text/event-stream", headers=HEADERS)
