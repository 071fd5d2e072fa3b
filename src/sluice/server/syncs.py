"""``GET /syncs`` and ``GET /syncs/{name}``: the status of the project's syncs, and hosting syncs in ``sluice serve``.

The status comes from the files running syncs write to ``<project>/.sluice/syncs/`` (:mod:`sluice.cdc.status`),
merged per sync by :func:`~sluice.cdc.status.read_status`, so the server shows syncs it hosts and syncs run by
``sluice sync`` processes of the same project alike. ``stale`` tells that a status was not refreshed for
:data:`STALE_AFTER_S` seconds (its process stopped or hangs).

Hosting (``sluice serve --sync NAME``): :class:`SyncHost` starts each named sync in a thread of the server
through the runtime's hook :data:`RUNTIME_HOOK` (``sluice.cdc.runtime:host_sync``), called as
``host_sync(project, name, stop: threading.Event) -> None``: it runs until ``stop`` is set, writing its status
file as ``sluice sync`` does. Without that hook in this build, starting raises :class:`SluiceError` naming it.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
from fastapi import FastAPI
from pydantic import BaseModel, Field
from starlette.responses import Response

from sluice.cdc.status import SyncStatus, read_status, status_dir
from sluice.errors import SluiceError
from sluice.project.model import Project
from sluice.server import models
from sluice.server.errors import NotFound, json_response

log = logging.getLogger("sluice.server")

STALE_AFTER_S = 10.0
"""A status older than this (seconds) is marked ``stale``: syncs rewrite theirs about once a second."""
RUNTIME_HOOK = "sluice.cdc.runtime:host_sync"


class TableStatusModel(BaseModel):
    """One synced table of one direction (``sluice.cdc.status.TableStatus``)."""

    source_table: str
    target_table: str
    direction: str
    state: str = "waiting"
    error: str = ""
    position: str = ""
    lag_s: float | None = Field(None, description="Seconds from source commit to applied.")
    applied: dict[str, int] = Field(default_factory=dict, description="Rows applied by operation.")
    captured: dict[str, int] = Field(default_factory=dict, description="Rows captured by operation.")
    conflicts: int = 0
    dead_letters: int = 0
    invalid_dates: int = 0
    snapshot_rows: int = 0
    snapshot_total: int | None = None
    note: str = Field(
        "", description="Why the table does not stream though a process of the sync runs (`apply not running: pid 12 gone`)."
    )


class ProcessStatusModel(BaseModel):
    """One process of a sync whose status file the merge took (``sluice.cdc.status.ProcessStatus``)."""

    roles: list[str]
    pid: int
    state: str
    running: bool = Field(description="Its file says it runs and, on this host, its pid runs.")
    gone: bool = Field(False, description="Killed or crashed: its file said it ran, its pid is gone.")
    host: str = ""
    updated_at: float = 0.0


class SyncStatusModel(BaseModel):
    """One sync, merged from the status files of its processes."""

    name: str
    source: str
    target: str
    direction: str
    state: str = "starting"
    error: str = ""
    pid: int = 0
    roles: list[str] = Field(default_factory=list)
    updated_at: float = Field(0.0, description="Seconds since the epoch of the latest status file.")
    stale: bool = Field(False, description=f"Not refreshed for {STALE_AFTER_S:g} s: its process stopped or hangs.")
    tables: list[TableStatusModel] = Field(default_factory=list)
    host: str = Field("", description="The host whose process wrote the newest status file.")
    gone: bool = Field(
        False, description="No process of it runs any more and one of them stopped without stopping cleanly (killed)."
    )
    processes: list[ProcessStatusModel] = Field(
        default_factory=list, description="Each process whose status file describes the sync now, and whether it runs."
    )
    roles_not_running: list[str] = Field(
        default_factory=list, description="Roles (`capture:<side>`, `apply:<side>`) no running process has."
    )


class SyncList(BaseModel):
    syncs: list[SyncStatusModel]


def sync_names(work_dir: Path) -> list[str]:
    """Names of the syncs with a status file in ``<work_dir>/syncs`` (``<name>.json``, ``<name>.<role>.json``), sorted."""
    folder = status_dir(work_dir)
    if not folder.is_dir():
        return []
    return sorted({path.name.split(".", 1)[0] for path in folder.glob("*.json")})


def status_body(status: SyncStatus, now: float | None = None) -> dict[str, Any]:
    """``status`` as the API answers it: its fields plus ``stale``."""
    body: dict[str, Any] = msgspec.to_builtins(status)
    body.setdefault("roles", [])
    body.setdefault("tables", [])
    body.setdefault("processes", [])
    body.setdefault("roles_not_running", [])
    body["stale"] = ((now if now is not None else time.time()) - status.updated_at) > STALE_AFTER_S
    return body


def all_statuses(work_dir: Path) -> list[dict[str, Any]]:
    """:func:`status_body` of every sync with a status file, by name."""
    now = time.time()
    found = (read_status(work_dir, name) for name in sync_names(work_dir))
    return [status_body(status, now) for status in found if status is not None]


def sync_routes(app: FastAPI, project: Project) -> None:
    """Add ``GET /syncs`` and ``GET /syncs/{name}`` for ``project``'s ``.sluice/syncs`` folder."""
    work_dir = project.work_dir

    @app.get("/syncs", summary="The project's syncs: per table state, position, lag and counts", response_model=SyncList)
    def list_syncs() -> Response:
        return json_response({"syncs": all_statuses(work_dir)})

    @app.get(
        "/syncs/{name}",
        summary="One sync's status",
        response_model=SyncStatusModel,
        responses={
            404: {
                "model": models.Error,
                "description": "No sync of that name has written a status (`known` lists those that have)",
            }
        },
    )
    def get_sync(name: str) -> Response:
        status = read_status(work_dir, name) if "/" not in name and not name.startswith(".") else None
        if status is None:
            known = sync_names(work_dir)
            listed = ", ".join(known) if known else "none yet (start one with `sluice sync PATH`)"
            raise NotFound(
                f"no sync named {name!r} has written a status in {status_dir(work_dir)}; known syncs: {listed}", known=known
            )
        return json_response(status_body(status))


HostFunction = Callable[[Project, str, threading.Event], None]


def runtime_hook() -> HostFunction:
    """The runtime's ``host_sync`` (see the module). Raises :class:`SluiceError` when this build has none."""
    module_name, _, attribute = RUNTIME_HOOK.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SluiceError(f"sluice serve --sync needs the sync runtime ({module_name}), which this build lacks: {exc}") from exc
    hook = getattr(module, attribute, None)
    if not callable(hook):
        raise SluiceError(f"sluice serve --sync needs {RUNTIME_HOOK}(project, name, stop_event), which this build lacks")
    return hook  # type: ignore[no-any-return]


class SyncHost:
    """Runs syncs in threads of the server: :meth:`start` them with the server, :meth:`stop` them with it."""

    def __init__(self, project: Project, names: Sequence[str], hook: HostFunction | None = None) -> None:
        self.project = project
        self.names = list(names)
        self._hook = hook
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start one thread per sync. Raises :class:`SluiceError` when the runtime hook is missing."""
        if not self.names:
            return
        hook = self._hook or runtime_hook()
        for name in self.names:
            thread = threading.Thread(target=self._run, args=(hook, name), name=f"sync-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self, hook: HostFunction, name: str) -> None:
        try:
            hook(self.project, name, self._stop)
        except SluiceError as exc:  # the user's to fix (each preflight problem at its line): no traceback
            log.error("sync %s stopped: %s", name, exc)
        except Exception:
            log.exception("sync %s stopped with an error", name)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask every hosted sync to stop and wait for them (at most ``timeout_s`` seconds each)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads.clear()
