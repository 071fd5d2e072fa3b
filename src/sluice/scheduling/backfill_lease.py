"""One process at a time runs a backfill: a lease in the state store, the scheduler's (``acquire_lease``).

Two ``sluice backfill`` commands of the same dates (the same command typed twice, or ``--resume ID`` while the first
still runs) would each run the dates not yet succeeded, and each would "continue" the other's running dates: every
date ran twice. :class:`BackfillLease` takes the state store's lease keyed ``<project>/backfill:<id>`` (the
``scheduler_leases`` table: holder, expiry ``ttl_s`` ahead), renews it from a thread every third of ``ttl_s`` while
the backfill runs, and releases it at the end, as :class:`~sluice.scheduling.scheduler.Scheduler` does for a
project's ticks. A second process finds it held and is refused (:class:`BackfillBusy`, naming the holder's process
and what to do). A holder that died without releasing it (``kill -9``) blocks others until the lease expires, unless
it ran on this host: its process id no longer exists, so the lease is taken over at once. A holder that loses the
lease (paused longer than ``ttl_s`` while another took it) starts no more dates (``on_lost``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from types import TracebackType

from sluice.errors import SluiceError
from sluice.state.base import StateStore

log = logging.getLogger("sluice.backfill")

LEASE_S = 30.0
"""Seconds a backfill's lease lasts without renewal (renewed every third of it)."""


class BackfillBusy(SluiceError):
    """The backfill is being run by another process (which holds its lease)."""


def lease_key(project: str, backfill_id: str) -> str:
    """The key of a backfill's lease in the state store's lease table (beside the project's scheduler lease)."""
    return f"{project}/backfill:{backfill_id}"


def this_holder() -> str:
    """``host:pid:token``: who holds a lease, readable by the process refused."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def _describe(holder: str) -> str:
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    return f"process {pid} on host {host}" if pid.isdigit() else holder


def _dead_here(holder: str) -> bool:
    """Whether ``holder`` was a process of this host that no longer exists."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


def live_holder(state: StateStore, project: str, backfill_id: str, now: float) -> str | None:
    """Who runs backfill ``backfill_id`` now ("process P on host H"): None when nobody holds its lease, it expired,
    or its holder was a process of this host that no longer exists."""
    held = state.lease(lease_key(project, backfill_id))
    if held is None or held.expires_at <= now or _dead_here(held.holder):
        return None
    return _describe(held.holder)


class BackfillLease:
    """A context manager holding the lease of backfill ``backfill_id`` of ``project``; raises BackfillBusy on entry
    when another live process holds it. ``clock`` gives epoch seconds; ``on_lost`` is called once if the lease is
    lost (another process took it after it expired)."""

    def __init__(
        self,
        state: StateStore,
        project: str,
        backfill_id: str,
        clock: Callable[[], float],
        *,
        holder: str | None = None,
        ttl_s: float = LEASE_S,
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self.state, self.backfill_id, self.clock = state, backfill_id, clock
        self.key = lease_key(project, backfill_id)
        self.holder = holder or this_holder()
        self.ttl_s = ttl_s
        self.on_lost = on_lost
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> BackfillLease:
        if not self.state.acquire_lease(self.key, self.holder, self.clock(), self.ttl_s):
            held = self.state.lease(self.key)
            if held is not None and _dead_here(held.holder):
                log.warning("backfill %s: %s died holding it; taking it over", self.backfill_id, _describe(held.holder))
                self.state.release_lease(self.key, held.holder)
            if not self.state.acquire_lease(self.key, self.holder, self.clock(), self.ttl_s):
                held = self.state.lease(self.key)
                who = _describe(held.holder) if held is not None else "another process"
                raise BackfillBusy(
                    f"backfill {self.backfill_id} is being run by {who}: wait for it to finish (sluice backfill PATH "
                    f"--list), or stop it (Ctrl-C) and run this again; a process killed without stopping gives it up "
                    f"{self.ttl_s:.0f}s after it last renewed its lease"
                )
        self._thread = threading.Thread(target=self._renew, name=f"lease-{self.backfill_id}", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                held = self.state.acquire_lease(self.key, self.holder, self.clock(), self.ttl_s)
            except Exception as exc:  # the state store away: try again; the lease may expire meanwhile
                log.warning("backfill %s: could not renew its lease: %s", self.backfill_id, exc)
                continue
            if not held:
                log.error("backfill %s: another process took its lease; no more dates start here", self.backfill_id)
                self.on_lost()
                return

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.state.release_lease(self.key, self.holder)
        except Exception as error:  # it expires by itself
            log.warning("backfill %s: could not release its lease: %s", self.backfill_id, error)
