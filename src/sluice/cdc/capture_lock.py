"""One capture per side of a sync: an exclusive lock file held by the process that captures it.

Two captures of one side fight: a second MariaDB binlog dump with the same ``server_id`` makes the server drop
the first ("another replica registered with server_id ... took over"), a second PostgreSQL reader finds the
slot active. So the process that runs a side's capture holds an exclusive ``fcntl.flock`` on
``<project>/.sluice/syncs/<sync>.capture.<side>.lock`` for as long as it runs (:class:`CaptureLock`, taken by
:class:`~sluice.cdc.runtime.SyncRuntime` before it builds anything); a second ``sluice sync`` of the same
project refuses to start with :class:`CaptureRunning`, naming the pid and start time of the first. The file
holds ``{"pid": ..., "started": ..., "parent": ...}`` of the holder, for that message only: the lock is the
flock, which the kernel releases when the process ends, even by ``kill -9``, so a stale file never blocks a start.

A capture child (``--processes 2``, started with :data:`CAPTURE_CHILD_ENV` set) records its parent's pid. When the
parent dies, even by ``kill -9``, Linux sends the child SIGTERM (``PR_SET_PDEATHSIG``) and it stops cleanly, which
takes a few seconds (30 s at most before its own deadline); a start in that window waits for it (up to
:data:`ORPHAN_WAIT_S`) instead of refusing, as the process that asked for the capture is already gone, and kills it
(SIGKILL) if it is still there then: the child ends itself 30 s after its parent's death, and killing a capture is
safe at any moment.

Apply takes no lock: apply-only processes of a partitioned sync on Kafka share a direction
(:mod:`sluice.cdc.apply_partitioned`). With ``--processes 2`` the capture child holds the lock, and the parent
checks it before starting that child (:func:`capture_holder`), so a second split run stops before applying.

Sources: flock(2) (the lock belongs to the open file description, released on close or process exit;
``LOCK_NB`` fails with ``EWOULDBLOCK`` when another holds it), Python's :func:`fcntl.flock`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import time
from pathlib import Path

import msgspec

from sluice.cdc.base import SyncError
from sluice.cdc.status import status_dir

log = logging.getLogger(__name__)

CAPTURE_CHILD_ENV = "SLUICE_SYNC_CAPTURE_CHILD"
"""Set to ``1`` in the environment of the capture child ``sluice sync --processes 2`` starts: it records its parent
(:func:`_orphaned`) and leaves the stop line to it."""
ORPHAN_WAIT_S = 40.0
"""Seconds a start waits for a capture child whose parent died to stop (it has 30 s before it is killed)."""


class CaptureRunning(SyncError):
    """Another process captures this side of the sync; the message names its pid and says to stop it first."""


class _Holder(msgspec.Struct):
    pid: int = 0
    started: float = 0.0
    parent: int = 0  # a capture child's parent (0: none), see _orphaned


def _decode(text: bytes) -> _Holder:
    try:
        return msgspec.json.decode(text, type=_Holder)
    except msgspec.DecodeError:  # the holder is between open and write: it just started
        return _Holder()


def _orphaned(holder: _Holder) -> bool:
    """True when ``holder`` is a capture child whose parent is gone (so it was told to stop): its parent pid in
    ``/proc/<pid>/stat`` is no longer the one it recorded. False when unknown (no ``/proc``, no parent recorded)."""
    if not holder.pid or not holder.parent:
        return False
    try:
        stat = Path(f"/proc/{holder.pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rpartition(")")[2].split()  # "pid (comm) state ppid ...": comm may hold spaces and parentheses
    return len(fields) > 1 and fields[1] != str(holder.parent)


def lock_path(work_dir: Path, sync: str, side: str) -> Path:
    """``<project>/.sluice/syncs/<sync>.capture.<side>.lock``."""
    return status_dir(work_dir) / f"{sync}.capture.{side}.lock"


def _refusal(sync: str, side: str, holder: _Holder) -> CaptureRunning:
    pid = str(holder.pid) if holder.pid else "another process"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.started)) if holder.started else "just now"
    return CaptureRunning(f"sync {sync}: capture of side {side} already runs in pid {pid} (started {started}); stop it first")


def _kill_orphan(holder: _Holder) -> bool:
    """SIGKILL ``holder``, a capture child whose parent died and that did not stop in :data:`ORPHAN_WAIT_S` (its parent
    would have killed it after 30 s: ``sluice.cli.sync._stop_child``), if its command line is a ``sluice sync``
    capture; whether it was killed. Killing a capture is safe at any moment: every position is kept for a restart."""
    try:
        command = Path(f"/proc/{holder.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if b"sluice" not in command or b"capture" not in command:
        return False
    log.warning("capture process %d did not stop after its parent ended: killing it (SIGKILL)", holder.pid)
    try:
        os.kill(holder.pid, signal.SIGKILL)
    except OSError:
        return False
    return True


class CaptureLock:
    """The exclusive lock on the capture of ``side`` of sync ``sync``; :meth:`acquire` it, :meth:`release` it."""

    def __init__(self, work_dir: Path, sync: str, side: str) -> None:
        self.path = lock_path(work_dir, sync, side)
        self.sync, self.side = sync, side
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`CaptureRunning` naming the process that holds it.

        Waits (up to :data:`ORPHAN_WAIT_S` seconds) while the holder is a capture child whose parent died."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._wait_for_flock(fd)
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        parent = os.getppid() if os.environ.get(CAPTURE_CHILD_ENV) == "1" else 0
        os.pwrite(fd, msgspec.json.encode(_Holder(os.getpid(), time.time(), parent)), 0)
        self._fd = fd

    def _wait_for_flock(self, fd: int) -> None:
        deadline: float | None = None
        killed = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                holder = _decode(os.pread(fd, 4096, 0))
                if not _orphaned(holder):
                    raise _refusal(self.sync, self.side, holder) from None
                if deadline is None:
                    deadline = time.monotonic() + ORPHAN_WAIT_S
                    log.warning(
                        "sync %s: waiting for the capture of side %s (pid %d), whose parent process ended, to stop",
                        self.sync, self.side, holder.pid,
                    )  # fmt: skip
                elif time.monotonic() > deadline:
                    if killed or not _kill_orphan(holder):
                        raise _refusal(self.sync, self.side, holder) from None
                    killed = True
                    deadline = time.monotonic() + 5.0
                time.sleep(0.2)

    def release(self) -> None:
        """Let go of the lock (closing the file releases the flock); the file stays, harmless."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)


def capture_holder(work_dir: Path, sync: str, side: str) -> CaptureRunning | None:
    """The refusal a capture of ``side`` would meet now (another process holds the lock), else None; holds nothing."""
    lock = CaptureLock(work_dir, sync, side)
    try:
        lock.acquire()
    except CaptureRunning as exc:
        return exc
    lock.release()
    return None
