"""Client-side deadlines of the data API's database connections, and a check of an idle connection's health.

A PostgreSQL statement time-out is enforced by the server: a server that stops answering (frozen, its host
gone, a network that drops packets) never sends the time-out, and a driver that waits on the socket waits
forever, holding the request and its pooled connection. :class:`Deadlines` bounds that wait on the client:
:meth:`Deadlines.arm` registers a connection in use with its deadline, :meth:`Deadlines.disarm` takes it
back, and one daemon thread (:data:`WATCH_INTERVAL_S`) shuts down the socket of a connection still armed after
its deadline (``shutdown(2)`` on a duplicate of its descriptor), so the driver's blocked read returns at once
with a lost connection, which the caller reports as a 503 ``database-unavailable`` and does not reuse.

Every connection of one :class:`Deadlines` has the same allowance, so its entries expire in the order they
were armed: the watch pops expired ones from the front of an insertion-ordered dict, and arming or disarming
is a dict write under an uncontended lock (no timer per request). libpq itself offers ``connect_timeout``,
TCP keep-alives and ``tcp_user_timeout``, none of which ends a statement sent to a frozen server: its kernel
still acknowledges the data and answers the keep-alives.

:func:`readable` tells whether an idle connection's socket has something to read: an idle autocommit
connection is sent nothing, so data or an end of file there means the server closed it (PostgreSQL sends
``57P01 terminating connection due to administrator command`` and closes when it stops) and the pool drops it
before a request uses it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import time
import weakref
from typing import Any

log = logging.getLogger("sluice.api")

WATCH_INTERVAL_S = 0.25
"""How often the watch thread looks for overrun connections (a cut comes at most this late)."""


class Deadlines:
    """Connections in use, each to be cut ``allowance_s`` seconds after it was armed unless disarmed before.

    ``socket_of(conn)`` gives the connection's socket descriptor (an ``int``), or raises when it has none.
    """

    def __init__(self, name: str, allowance_s: float, socket_of: Any) -> None:
        self.name = name
        self.allowance_s = allowance_s
        self.socket_of = socket_of
        self._armed: dict[int, tuple[float, Any]] = {}
        self._cut: set[int] = set()
        self._lock = threading.Lock()
        _watch(self)

    def arm(self, conn: Any) -> None:
        """Start ``conn``'s deadline (``allowance_s`` from now)."""
        with self._lock:
            self._armed[id(conn)] = (time.monotonic() + self.allowance_s, conn)

    def disarm(self, conn: Any) -> bool:
        """Stop ``conn``'s deadline; True when it was cut meanwhile (the connection is lost: do not reuse it)."""
        key = id(conn)
        with self._lock:
            self._armed.pop(key, None)
            if key in self._cut:
                self._cut.discard(key)
                return True
        return False

    def expire(self, now: float) -> int:
        """Cut every connection whose deadline is before ``now``; the number cut."""
        cut = 0
        with self._lock:
            while self._armed:
                key, (deadline, conn) = next(iter(self._armed.items()))
                if deadline > now:
                    break
                del self._armed[key]
                self._cut.add(key)
                cut += 1
                log.warning("data API: '%s' did not answer within %g s; its connection is closed", self.name, self.allowance_s)
                # Under the lock: the connection cannot be disarmed, closed and its descriptor reused meanwhile.
                with contextlib.suppress(Exception):  # already closed: nothing to cut
                    shutdown(self.socket_of(conn))
        return cut


def shutdown(fd: int) -> None:
    """Shut down both directions of the socket ``fd`` (shared by every descriptor of it): a read blocked on it
    returns an end of file."""
    sock = socket.socket(fileno=os.dup(fd))
    try:
        sock.shutdown(socket.SHUT_RDWR)
    finally:
        sock.close()


def readable(fd: int) -> bool:
    """Whether the socket ``fd`` has data or an end of file waiting (without blocking)."""
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    return bool(poll.poll(0))


_watched: weakref.WeakSet[Deadlines] = weakref.WeakSet()
_watch_lock = threading.Lock()
_watcher: threading.Thread | None = None


def _watch(deadlines: Deadlines) -> None:
    global _watcher
    with _watch_lock:
        _watched.add(deadlines)
        if _watcher is None or not _watcher.is_alive():
            _watcher = threading.Thread(target=_run, name="sluice-api-deadlines", daemon=True)
            _watcher.start()


def _run() -> None:
    while True:
        time.sleep(WATCH_INTERVAL_S)
        now = time.monotonic()
        with _watch_lock:
            watched = list(_watched)
        for deadlines in watched:
            deadlines.expire(now)
