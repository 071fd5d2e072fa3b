"""One SQLite file shared by the threads of a process (and by other processes): the embedded bus and
the default state store both live in one.

Each thread gets its own connection (SQLite connections are not for sharing); the connections of
threads that have ended are closed when the next one opens (a server starts threads for every run,
and each connection holds its own page cache: keeping them grew a long-lived server by about half a
megabyte a run). Connections are in WAL mode so
readers never block the writer, with ``synchronous=NORMAL`` (a commit survives a process crash; a
power cut may lose the last commits). Writes take the write lock up front (``BEGIN IMMEDIATE``) so
two writers never deadlock on a lock upgrade. Writers of one process first queue on a lock of the
process per file: SQLite's own wait for a busy file sleeps in steps of 1 to 100 ms, which under
load would add those sleeps to every event's way through the bus; a thread lock hands over at once.

WAL checkpoints (copying the log back into the database file, and its only ``fsync`` with
``synchronous=NORMAL``) run in a thread of their own per file and process, at most every
``CHECKPOINT_INTERVAL_S`` after a write, instead of SQLite's automatic checkpoint inside the commit that
crosses 1,000 pages: that one ran while the committing thread held the write lock, so every writer of the
process waited for the copy and the ``fsync`` (tens of ms on a busy disk). A passive checkpoint does not
block writers; the last connection to close checkpoints what is left, as before.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sluice.errors import SluiceError

CHECKPOINT_INTERVAL_S = 0.2
"""After a write, the WAL is checkpointed within this many seconds (by the file's checkpoint thread)."""
_write_locks: dict[Path, threading.Lock] = {}
_write_locks_guard = threading.Lock()


def _write_lock(path: Path) -> threading.Lock:
    with _write_locks_guard:
        return _write_locks.setdefault(path, threading.Lock())


class SqliteFile:
    """Per-thread connections to one database file. ``what`` names it in errors (e.g. "the embedded bus")."""

    def __init__(self, path: str | os.PathLike[str], what: str, error: type[SluiceError], schema: str) -> None:
        self.path = Path(path).resolve()
        self.what = what
        self.error = error
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise error(f"cannot create the folder of {what}, {self.path.parent}: {exc.strerror}") from exc
        self._local = threading.local()
        self._all: list[tuple[threading.Thread, sqlite3.Connection]] = []  # each connection and its thread
        self._lock = threading.Lock()
        self._write_lock = _write_lock(self.path)
        self._dirty = threading.Condition()  # notified after writes; guards the two fields below
        self._written = False
        self._checkpointer: threading.Thread | None = None
        self.conn().executescript(schema)

    def conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpoint thread does it, outside the write lock
            except sqlite3.Error as exc:
                raise self.error(f"cannot open {self.what} at {self.path}: {exc}") from exc
            self._local.conn = conn
            with self._lock:
                self._close_orphans()
                self._all.append((threading.current_thread(), conn))
        return conn

    def _close_orphans(self) -> None:
        """Close the connections of threads that have ended (no one else uses them). Holds ``_lock``."""
        alive = []
        for thread, conn in self._all:
            if thread.is_alive():
                alive.append((thread, conn))
            else:
                conn.close()
        self._all = alive

    @property
    def open_connections(self) -> int:
        """How many connections are open (one per live thread that used the file, and this thread's)."""
        with self._lock:
            return len(self._all)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on this thread's connection: committed on success, rolled back on error."""
        conn = self.conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        self._wrote()

    def _wrote(self) -> None:
        """Ask the checkpoint thread (started on the first write) for a checkpoint soon."""
        with self._dirty:
            if self._written:
                return
            self._written = True
            if self._checkpointer is None:
                self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="sqlite-checkpoint", daemon=True)
                self._checkpointer.start()
            self._dirty.notify()

    def _checkpoint_loop(self) -> None:
        me = threading.current_thread()
        while True:
            with self._dirty:
                while not self._written:
                    self._dirty.wait()
                self._written = False
                if self._checkpointer is not me:  # closed
                    return
            with contextlib.suppress(sqlite3.Error):  # the next one catches up; closing the last connection does too
                self.conn().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            deadline = time.monotonic() + CHECKPOINT_INTERVAL_S
            with self._dirty:
                while self._checkpointer is me and (remaining := deadline - time.monotonic()) > 0:
                    self._dirty.wait(remaining)

    def ping(self) -> None:
        try:
            self.conn().execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise self.error(f"{self.what} at {self.path} does not answer: {exc}") from exc

    def close(self) -> None:
        with self._dirty:
            checkpointer, self._checkpointer = self._checkpointer, None
            if checkpointer is not None:
                self._written = True
                self._dirty.notify_all()
        if checkpointer is not None:
            checkpointer.join()
        with self._lock:
            for _, conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
