"""uvicorn's httptools protocol with each response's head and body sent in one write (one ``send`` call).

uvicorn writes a response's status line and headers as soon as the app sends ``http.response.start``, and the
body with ``http.response.body``: two writes, hence two system calls on a loopback or LAN socket. At a few
thousand small answers per second (a GraphQL or REST read) those writes were a fifth of the server's CPU.
:class:`CorkedHttpToolsProtocol` gives the protocol a :class:`CorkedTransport`: a write when nothing is held
is held until the next write (sent together, with ``writelines``: one vectored write) or until the event loop's
next turn (``call_soon``), so a stream (Server-Sent Events, a WebSocket after its upgrade) is never delayed by
more than that turn, and the bytes keep their order. ``close`` sends what is held first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CorkedTransport:
    """A transport that sends a held write together with the next one (see the module); anything else is the
    wrapped transport's."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
            return
        self._held = None
        self._transport.writelines((held, data))

    def flush(self) -> None:
        """Send what is held (nothing when it went out with a later write)."""
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CorkedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's ``httptools`` protocol on a :class:`CorkedTransport` (``uvicorn.Config(http=...)``)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CorkedTransport(transport, self.loop))  # type: ignore[arg-type]
