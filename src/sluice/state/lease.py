"""A lease in the state store held by a live process: who does a piece of work (a backfill, a run's coordinator).

:class:`StoreLease` takes the state store's lease of a key (the ``scheduler_leases`` table, ``StateStore.acquire_lease``:
holder, expiry ``ttl_s`` ahead), renews it from a thread every third of ``ttl_s`` while its holder works, and
releases it at the end. Another process finds it held and is refused. A holder that died without releasing it
(``kill -9``, a laptop closed) blocks others until the lease expires, unless it ran on this host: its process id no
longer exists, so the lease is taken over at once (:func:`live_holder` says nobody holds it). A holder that loses the
lease (paused longer than ``ttl_s`` while another took it) is told once (``on_lost``).

Used by backfills (``scheduling/backfill_lease.py``, key ``<project>/backfill:<id>``) and by the coordinators of runs
started by hand (``runtime/run_lease.py``, key ``<project>/run:<run id>``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from types import TracebackType

from sluice.errors import SluiceError
from sluice.pids import pid_alive
from sluice.state.base import StateStore

log = logging.getLogger("sluice.lease")

LEASE_S = 30.0
"""Seconds a lease lasts without renewal (renewed every third of it)."""


class LeaseBusy(SluiceError):
    """Another live process holds the lease."""


def this_holder() -> str:
    """``host:pid:token``: who holds a lease, readable by the process refused."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def describe_holder(holder: str) -> str:
    """``process P on host H`` for a holder written by :func:`this_holder` (else the holder as it is)."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    return f"process {pid} on host {host}" if pid.isdigit() else holder


def dead_here(holder: str) -> bool:
    """Whether ``holder`` was a process of this host that no longer exists, or is a zombie (killed, not yet reaped)."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return not pid_alive(int(pid))  # a zombie (killed, not yet reaped) is dead


def live_holder(state: StateStore, key: str, now: float) -> str | None:
    """Who holds the lease ``key`` now ("process P on host H"): None when nobody holds it, it expired (``now`` in
    epoch seconds), or its holder was a process of this host that no longer exists."""
    held = state.lease(key)
    if held is None or held.expires_at <= now or dead_here(held.holder):
        return None
    return describe_holder(held.holder)


class StoreLease:
    """Holds the lease ``key`` of ``state`` while its work goes on: :meth:`acquire` (or ``with``), then :meth:`release`.

    ``clock`` gives epoch seconds; ``name`` says what the lease is for in log lines ("backfill bf-1", "run R");
    ``busy(who)`` builds the error ``with`` raises when another live process (``who``: "process P on host H") holds
    it; ``on_lost`` is called once if the lease is lost (another process took it after it expired); ``on_renewed``
    after each renewal, in the renewing thread (what it raises is logged).
    """

    def __init__(
        self,
        state: StateStore,
        key: str,
        clock: Callable[[], float],
        *,
        name: str,
        busy: Callable[[str], SluiceError] | None = None,
        holder: str | None = None,
        ttl_s: float = LEASE_S,
        on_lost: Callable[[], None] = lambda: None,
        on_renewed: Callable[[], None] = lambda: None,
    ) -> None:
        self.state, self.key, self.clock, self.name = state, key, clock, name
        self.holder = holder or this_holder()
        self.ttl_s = ttl_s
        self.on_lost = on_lost
        self.on_renewed = on_renewed
        self._busy = busy or (lambda who: LeaseBusy(f"{name} is held by {who}; wait for it to finish"))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, *, quiet: bool = False) -> str | None:
        """Take the lease and start renewing it; None when taken, else who holds it ("process P on host H").
        A holder of this host whose process no longer exists is taken over at once (said in a warning, unless
        ``quiet``: the caller says what it means)."""
        if not self.state.acquire_lease(self.key, self.holder, self.clock(), self.ttl_s):
            held = self.state.lease(self.key)
            if held is not None and dead_here(held.holder):
                log.log(
                    logging.INFO if quiet else logging.WARNING,
                    "%s: %s died holding its lease; taking it over",
                    self.name,
                    describe_holder(held.holder),
                )
                self.state.release_lease(self.key, held.holder)
            if not self.state.acquire_lease(self.key, self.holder, self.clock(), self.ttl_s):
                held = self.state.lease(self.key)
                return describe_holder(held.holder) if held is not None else "another process"
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{self.name}", daemon=True)
        self._thread.start()
        return None

    def hold(self) -> None:
        """:meth:`acquire`, raising the ``busy`` error (naming the live holder) when another process holds it."""
        who = self.acquire()
        if who is not None:
            raise self._busy(who)

    def __enter__(self) -> StoreLease:
        self.hold()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                held = self.state.acquire_lease(self.key, self.holder, self.clock(), self.ttl_s)
            except Exception as exc:  # the state store away: try again; the lease may expire meanwhile
                log.warning("%s: could not renew its lease: %s", self.name, exc)
                continue
            if not held:
                log.error("%s: another process took its lease", self.name)
                self.on_lost()
                return
            try:
                self.on_renewed()
            except Exception as exc:
                log.warning("%s: after renewing its lease: %s", self.name, exc)

    def release(self) -> None:
        """Stop renewing and give the lease up (it expires by itself if the store cannot be reached); idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        if thread is not threading.current_thread():
            thread.join()
        try:
            self.state.release_lease(self.key, self.holder)
        except Exception as error:  # it expires by itself
            log.warning("%s: could not release its lease: %s", self.name, error)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
