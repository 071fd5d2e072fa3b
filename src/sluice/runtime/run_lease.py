"""A run started by hand holds a lease while its coordinator lives; a run left by a dead coordinator is interrupted.

A coordinator that dies (``kill -9``, a laptop closed) leaves its run ``running`` in the state store, and the work it
handed out (``ObjectReady`` messages) still on the bus. Started again by hand, the project's new run would load the
same objects as that leftover work: an ``append`` destination got each row twice. So:

* the coordinator of a run started by hand (trigger ``manual``: ``sluice run``, ``sluice serve``'s ``POST /orchestrate``)
  holds the state store's lease ``<project>/run:<run id>`` (:class:`~sluice.state.lease.StoreLease`, the backfills'
  mechanism: renewed every third of ``RUN_LEASE_S`` by a thread, released when the run ends) from the moment its id
  is chosen, and a coordinator resuming a run takes it before reading the run (:func:`run_lease`);
* a new run started by hand (before its in-process workers take any message), and ``sluice serve`` starting, mark
  ``interrupted`` every run of the project started by hand, still ``running``, whose lease nobody holds
  (:func:`interrupt_dead_runs`: it expired, or its holder was a process of this host that no longer exists or is a
  zombie), with a warning saying how to resume it;
* a worker, before starting an object of a run started by hand, marks the run so when its lease is not held
  (:func:`interrupt_if_gone`), reads the run's status again, and skips the work of an ``interrupted`` run
  (``runtime/run.py`` ``RunActivity.settled``); ``sluice run PATH --resume --run ID`` continues it, handing its
  objects that were out again as their next attempt (a worker skips an object's older attempt);
* a coordinator that was only paused (longer than the lease) sees the mark, or its lease taken, at its next renewal
  and stops its loop (:class:`RunInterrupted`) rather than wait for work that workers skip.

Runs a schedule, a sensor or a backfill started hold no run lease: the scheduler that takes the project's lease
resumes them, a backfill its dates under its own lease.
"""

from __future__ import annotations

import logging
import os
import shlex
import time
from collections.abc import Callable, Container, Mapping
from pathlib import Path

from sluice.errors import SluiceError
from sluice.state.base import RunRecord, StateStore
from sluice.state.lease import LEASE_S, LeaseBusy, StoreLease, live_holder

log = logging.getLogger("sluice.coordinator")

RUN_LEASE_S = LEASE_S
"""Seconds a run's lease lasts without renewal (renewed every third of it): a coordinator on another host, killed,
leaves its run to be marked ``interrupted`` this long after its last renewal (at once on this host)."""


class RunBusy(LeaseBusy):
    """Another live process drives the run (its coordinator holds the run's lease)."""


class RunInterrupted(SluiceError):
    """The run was marked ``interrupted`` while its coordinator was paused (it did not renew its lease in time)."""


def run_lease_key(project: str, run_id: str) -> str:
    """The key of a run's lease in the state store's lease table: ``<project>/run:<run id>``."""
    return f"{project}/run:{run_id}"


def leased(options: Mapping[str, object]) -> bool:
    """Whether a run with these recorded options holds a run lease: one started by hand (trigger ``manual``)."""
    return options.get("trigger", "manual") == "manual"


def run_lease(
    state: StateStore,
    project: str,
    run_id: str,
    *,
    clock: Callable[[], float] = time.time,
    ttl_s: float | None = None,
    on_renewed: Callable[[], None] = lambda: None,
    on_lost: Callable[[], None] = lambda: None,
) -> StoreLease:
    """The lease of run ``run_id`` of ``project`` (not yet taken: ``acquire()`` it, ``release()`` at the run's end; as
    a context manager it raises :class:`RunBusy` naming the live process that holds it); ``ttl_s`` None:
    :data:`RUN_LEASE_S`; ``on_renewed`` is called after each renewal, ``on_lost`` once if another process took it."""
    ttl_s = RUN_LEASE_S if ttl_s is None else ttl_s

    def busy(who: str) -> RunBusy:
        return RunBusy(
            f"run {run_id} is being driven by {who}: wait for it to finish (sluice runs PATH) or stop that process "
            f"first; a coordinator killed without stopping gives its run up {ttl_s:.0f}s after it last renewed its lease"
        )

    key = run_lease_key(project, run_id)
    name = f"run {run_id}"
    return StoreLease(state, key, clock, name=name, busy=busy, ttl_s=ttl_s, on_renewed=on_renewed, on_lost=on_lost)


def resume_command(root: Path, run_id: str) -> str:
    """``sluice run PATH --resume --run ID`` for the project folder ``root`` (relative to the working directory when
    inside it)."""
    try:
        where = os.path.relpath(root, Path.cwd()) if root.resolve().is_relative_to(Path.cwd().resolve()) else str(root)
    except (OSError, ValueError):
        where = str(root)
    return f"sluice run {shlex.quote(where)} --resume --run {run_id}"


def interrupt_dead_runs(
    state: StateStore,
    project: str,
    root: Path,
    *,
    clock: Callable[[], float] = time.time,
    keep: Container[str] = (),
    ttl_s: float | None = None,
) -> list[RunRecord]:
    """Mark ``interrupted`` every run of ``project`` started by hand that is recorded ``running`` and that no live
    coordinator drives (nobody holds its lease), but those in ``keep``; the runs marked, each with a warning naming
    the command that resumes it (``root``: the project folder). Each run's lease is taken while it is marked, so a
    coordinator resuming it at that moment either drives it (it is left alone) or finds it ``interrupted``.
    Raises StateError when the store cannot be reached."""
    marked: list[RunRecord] = []
    for record in state.find_runs(project, status="running", limit=1000):
        if record.run_id not in keep and interrupt_if_gone(state, record, root, clock=clock, ttl_s=ttl_s):
            marked.append(record)
    return marked


def coordinator_gone(state: StateStore, record: RunRecord, now: float) -> bool:
    """Whether ``record`` is a run started by hand, recorded ``running``, whose lease nobody holds (its coordinator
    was killed: a process of this host that no longer exists, or its lease expired). Raises StateError."""
    return (
        record.status == "running"
        and leased(record.options)
        and live_holder(state, run_lease_key(record.project, record.run_id), now) is None
    )


def interrupt_if_gone(
    state: StateStore,
    record: RunRecord,
    root: Path | None,
    *,
    clock: Callable[[], float] = time.time,
    ttl_s: float | None = None,
) -> bool:
    """Mark ``interrupted`` the run ``record`` if it was started by hand, is still ``running`` and no live coordinator
    drives it (nobody holds its lease), with a warning naming the command that resumes it (``root``: the project
    folder, None: ``PATH``); whether it was marked here. Its lease is taken while it is marked, so a coordinator
    resuming it at that moment either drives it (it is left alone) or finds it ``interrupted``. Raises StateError."""
    if not leased(record.options):
        return False
    lease = run_lease(state, record.project, record.run_id, clock=clock, ttl_s=ttl_s)
    if lease.acquire(quiet=True) is not None:  # a live coordinator drives it
        return False
    try:
        if not state.set_run_status(record.run_id, "interrupted", clock(), expected="running"):
            return False  # finished or marked meanwhile
    finally:
        lease.release()
    resume = resume_command(root, record.run_id) if root is not None else f"sluice run PATH --resume --run {record.run_id}"
    log.warning(
        "run %s was left running by a coordinator that is gone (killed, or its machine stopped): marked interrupted, "
        "its leftover work will not run; resume it with: %s",
        record.run_id,
        resume,
        extra={"run_id": record.run_id},
    )
    return True
