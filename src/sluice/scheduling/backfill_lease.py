"""One process at a time runs a backfill: a lease in the state store (:class:`~sluice.state.lease.StoreLease`).

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

from collections.abc import Callable

from sluice.state import lease
from sluice.state.base import StateStore
from sluice.state.lease import LEASE_S, LeaseBusy, StoreLease, this_holder

__all__ = ["LEASE_S", "BackfillBusy", "BackfillLease", "lease_key", "live_holder", "this_holder"]


class BackfillBusy(LeaseBusy):
    """The backfill is being run by another process (which holds its lease)."""


def lease_key(project: str, backfill_id: str) -> str:
    """The key of a backfill's lease in the state store's lease table (beside the project's scheduler lease)."""
    return f"{project}/backfill:{backfill_id}"


def live_holder(state: StateStore, project: str, backfill_id: str, now: float) -> str | None:
    """Who runs backfill ``backfill_id`` now ("process P on host H"): None when nobody holds its lease, it expired,
    or its holder was a process of this host that no longer exists."""
    return lease.live_holder(state, lease_key(project, backfill_id), now)


class BackfillLease(StoreLease):
    """A context manager holding the lease of backfill ``backfill_id`` of ``project``; raises BackfillBusy on entry
    when another live process holds it. ``clock`` gives epoch seconds; ``on_lost`` is called once if the lease is
    lost (another process took it after it expired): no more dates start."""

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
        def busy(who: str) -> BackfillBusy:
            return BackfillBusy(
                f"backfill {backfill_id} is being run by {who}: wait for it to finish (sluice backfill PATH "
                f"--list), or stop it (Ctrl-C) and run this again; a process killed without stopping gives it up "
                f"{ttl_s:.0f}s after it last renewed its lease"
            )

        super().__init__(
            state,
            lease_key(project, backfill_id),
            clock,
            name=f"backfill {backfill_id}",
            busy=busy,
            holder=holder,
            ttl_s=ttl_s,
            on_lost=on_lost,
        )
        self.backfill_id = backfill_id
