"""One capture per side of a sync: an exclusive lock file held by the process that captures it.

Two captures of one side fight: a second MariaDB binlog dump with the same ``server_id`` makes the server drop
the first ("another replica registered with server_id ... took over"), a second PostgreSQL reader finds the
slot active. So the process that runs a side's capture holds an exclusive ``fcntl.flock`` on
``<project>/.sluice/syncs/<sync>.capture.<side>.lock`` for as long as it runs (:class:`CaptureLock`, taken by
:class:`~sluice.cdc.runtime.SyncRuntime` before it builds anything); a second ``sluice sync`` of the same
project refuses to start with :class:`CaptureRunning`, naming the pid and start time of the first. The file
holds ``{"pid": ..., "started": ...}`` of the holder, for that message only: the lock is the flock, which the
kernel releases when the process ends, even by ``kill -9``, so a stale file never blocks a start.

Apply takes no lock: apply-only processes of a partitioned sync on Kafka share a direction
(:mod:`sluice.cdc.apply_partitioned`). With ``--processes 2`` the capture child holds the lock, and the parent
checks it before starting that child (:func:`capture_holder`), so a second split run stops before applying.

Sources: flock(2) (the lock belongs to the open file description, released on close or process exit;
``LOCK_NB`` fails with ``EWOULDBLOCK`` when another holds it), Python's :func:`fcntl.flock`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

import msgspec

from sluice.cdc.base import SyncError
from sluice.cdc.status import status_dir


class CaptureRunning(SyncError):
    """Another process captures this side of the sync; the message names its pid and says to stop it first."""


class _Holder(msgspec.Struct):
    pid: int = 0
    started: float = 0.0


def lock_path(work_dir: Path, sync: str, side: str) -> Path:
    """``<project>/.sluice/syncs/<sync>.capture.<side>.lock``."""
    return status_dir(work_dir) / f"{sync}.capture.{side}.lock"


def _refusal(sync: str, side: str, text: bytes) -> CaptureRunning:
    try:
        holder = msgspec.json.decode(text, type=_Holder)
    except msgspec.DecodeError:  # the holder is between open and write: it just started
        holder = _Holder()
    pid = str(holder.pid) if holder.pid else "another process"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.started)) if holder.started else "just now"
    return CaptureRunning(f"sync {sync}: capture of side {side} already runs in pid {pid} (started {started}); stop it first")


class CaptureLock:
    """The exclusive lock on the capture of ``side`` of sync ``sync``; :meth:`acquire` it, :meth:`release` it."""

    def __init__(self, work_dir: Path, sync: str, side: str) -> None:
        self.path = lock_path(work_dir, sync, side)
        self.sync, self.side = sync, side
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`CaptureRunning` naming the process that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 4096, 0)
            os.close(fd)
            raise _refusal(self.sync, self.side, text) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, msgspec.json.encode(_Holder(os.getpid(), time.time())), 0)
        self._fd = fd

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
