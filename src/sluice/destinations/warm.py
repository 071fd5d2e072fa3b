"""Destinations connected ahead of their first load, so that a run's first load does not wait for a connection.

A PostgreSQL connection costs a TCP handshake, authentication and the start of a server process: 40-120 ms
measured on issue 12's bench (``bench/files_postgres.py``), serial before the first COPY when the destination
connects at its first statement. :func:`run_project <sluice.runtime.run.run_project>` asks for the connections of
the destinations its run may load (:func:`planned_connections`) while it opens the bus, the state store and the
lake and plans the run; the object's load then takes the connected destination (:meth:`WarmDestinations.open`).

Only destinations whose class says connecting early is harmless (:attr:`Destination.connects_ahead`: a server
connection, not a DuckDB file that would be locked meanwhile) are connected ahead. A connection that fails ahead is
forgotten: the load opens its own and reports the failure as usual. One destination is kept per connection, for the
first load through it; later loads (and loads of long-lived workers, which warm nothing) open their own.

>>> warm = WarmDestinations(project.root)                                   # doctest: +SKIP
>>> warm.connect(planned_connections(project, targets=None))             # doctest: +SKIP
>>> destination = warm.open(project.connections["warehouse"])            # doctest: +SKIP
>>> warm.close()                                                         # closes what no load took  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from sluice.destinations.base import Destination
from sluice.destinations.registry import destination_plugin, open_destination
from sluice.errors import SluiceError
from sluice.project.model import ConnectionSpec, Project

log = logging.getLogger("sluice.destinations")


class _Connecting:
    """One destination being connected in a thread of its own (a daemon: a server that does not answer never holds
    up the end of the process)."""

    def __init__(self, destination: Destination, *, connect: bool = True) -> None:
        self.destination = destination
        self.failed = False
        self._lock = threading.Lock()
        self._done = not connect
        self._abandoned = False
        self.thread = threading.Thread(target=self._connect, name="sluice-connect", daemon=True)
        if connect:
            self.thread.start()

    def _connect(self) -> None:
        try:
            self.destination.connect()
        except Exception as exc:  # the load connects again and reports it
            self.failed = True
            log.debug("connecting destination '%s' ahead failed: %s", self.destination.connection.name, exc)
        with self._lock:
            self._done = True
            abandoned = self._abandoned
        if abandoned:
            _close(self.destination)

    def result(self) -> Destination | None:
        """The connected destination once its thread is done; None (closed) when connecting failed."""
        if self.thread.ident is not None:
            self.thread.join()
        if self.failed:
            _close(self.destination)
            return None
        return self.destination

    def abandon(self) -> None:
        """Close the destination: now if it is connected, else as soon as its thread is done (without waiting)."""
        with self._lock:
            self._abandoned = True
            done = self._done
        if done:
            _close(self.destination)


def _close(destination: Destination) -> None:
    with contextlib.suppress(Exception):
        destination.close()


class WarmDestinations:
    """Destinations connected ahead, one per connection, handed to the first load that asks; thread-safe.

    ``root``: the project folder (what :func:`~sluice.destinations.registry.open_destination` resolves file paths
    against).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._ready: dict[str, _Connecting] = {}

    def connect(self, connections: Iterable[ConnectionSpec]) -> None:
        """Start connecting a destination for each of ``connections`` whose class connects ahead (not already
        connecting); returns at once. A connection that cannot be opened as a destination is left out."""
        for connection in connections:
            with self._lock:
                if connection.name in self._ready:
                    continue
            try:
                if not getattr(destination_plugin(connection).load(), "connects_ahead", False):
                    continue
                destination = open_destination(connection, self.root)
            except SluiceError:
                continue  # the load raises it where it belongs
            with self._lock:
                if connection.name not in self._ready:  # another caller may have got there meanwhile
                    self._ready[connection.name] = _Connecting(destination)
                    continue
            _close(destination)

    def open(self, connection: ConnectionSpec) -> Destination:
        """The destination connected ahead for ``connection`` (waiting for its connection if it is still being made),
        else a new one (:func:`~sluice.destinations.registry.open_destination`, which raises ConfigError or
        MissingExtra). The caller closes it."""
        with self._lock:
            connecting = self._ready.pop(connection.name, None)
        if connecting is not None and connecting.destination.connection == connection:
            destination = connecting.result()
            if destination is not None:
                return destination
        elif connecting is not None:
            connecting.abandon()
        return open_destination(connection, self.root)

    def give_back(self, destination: Destination) -> None:
        """Keep ``destination`` (taken with :meth:`open`, done with, its connection open) for the next load through
        its connection, or close it when one is kept already or its class does not connect ahead (a database file is
        not kept open: planning hands back the destination it asked whether a table exists with)."""
        name = destination.connection.name
        with self._lock:
            if destination.connects_ahead and name not in self._ready:
                self._ready[name] = _Connecting(destination, connect=False)
                return
        _close(destination)

    def close(self) -> None:
        """Close the destinations no load took (one still connecting: once connected, without waiting for it)."""
        with self._lock:
            left, self._ready = list(self._ready.values()), {}
        for connecting in left:
            connecting.abandon()


def planned_connections(project: Project, targets: Sequence[int] | None) -> list[ConnectionSpec]:
    """The connections of the destinations a run of ``targets`` (None: the default targets) may load: those of the
    targets and their ancestors that have a destination, once each; empty when a target is unknown (planning says so)."""
    from sluice.graph.plan import default_targets, project_graph

    chosen = sorted(set(targets)) if targets else default_targets(project)
    if any(target not in project.objects for target in chosen):
        return []
    needed = project_graph(project).ancestors(chosen) | set(chosen)
    names = {spec.connection for oid in needed if (spec := project.objects[oid].destination) is not None}
    return [project.connections[name] for name in sorted(names) if name in project.connections]
