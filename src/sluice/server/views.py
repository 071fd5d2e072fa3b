"""The JSON answers about runs and objects, built from the state store or, for the active run, from the
coordinator's in-memory states.

``GET /runs/{id}`` must stay fast for big runs under many clients, so its encoded body is cached: a
finished run's until the cache is full (it cannot change), the active run's for ``active_ttl_s`` (0.1 s)
while it changes. One request at a time rebuilds it; the others meanwhile get the previous copy.
Finished runs' details and statuses share ``cache_bytes`` (32 MiB): the least recently used go first.
"""

from __future__ import annotations

import dataclasses
import gzip
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from sluice.bounded import ByteLru
from sluice.graph.plan import project_graph
from sluice.lake.base import Lake
from sluice.lake.dated import held_logical_date
from sluice.project.model import Project, layer_of
from sluice.runtime.run_lease import coordinator_gone
from sluice.server.check_results import CheckResult, CheckResults, check_state
from sluice.server.errors import NotFound
from sluice.server.runs import RunManager, find_run
from sluice.server.sample import count_rows, sample_rows
from sluice.state.base import OBJECT_STATUSES, RESUMABLE_RUN_STATUSES, ObjectState, RunRecord, StateStore

DATED_MARK = ".ld-"
"""In a lake location, the mark of a per-date output (``<layer>/<name>.ld-<date>``, :func:`sluice.lake.dated.dated_name`)."""

_encoder = msgspec.json.Encoder(enc_hook=str)
LATEST_RUNS = 20  # how many recent runs "last status" looks through
GZIP_LEVEL = 1  # fast: a 2,000-object run's 0.5 MB compress in a few ms to about a tenth


def count_statuses(statuses: Iterable[str]) -> dict[str, int]:
    counts = dict.fromkeys(OBJECT_STATUSES, 0)
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return counts


def run_summary(record: RunRecord, counts: dict[str, int], gone: bool = False) -> dict[str, Any]:
    """``gone``: a run started by hand, ``running``, whose coordinator no longer holds its lease (``runtime/run_lease.py``)."""
    end = record.finished_at if record.finished_at is not None else time.time()
    return {
        "run_id": record.run_id,
        "project": record.project,
        "status": record.status,
        "coordinator_gone": gone,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "duration_s": max(0.0, end - record.started_at),
        "targets": record.targets,
        "counts": counts,
    }


def object_run(s: ObjectState, name: str | None) -> dict[str, Any]:
    return {
        "object_id": s.object_id,
        "name": name,
        "stage": s.stage,
        "status": s.status,
        "attempt": s.attempt,
        "rows": s.rows,
        "duration_s": s.duration_s,
        "error": s.error,
        "reason": s.reason,
        "fresh": s.status == "skipped" and s.content_hash is not None,
        "location": s.location,
        "ready_at": s.ready_at,
        "started_at": s.started_at,
        "finished_at": s.finished_at,
    }


def with_checks(entry: dict[str, Any], results: list[CheckResult]) -> None:
    """Add an object's check results to its JSON entry (``checks`` and ``check_state``), when it has some."""
    if results:
        entry["checks"] = results
        entry["check_state"] = check_state(results)


class JsonBody:
    """An encoded JSON answer, and its gzip form once asked for (computed once, shared by every request)."""

    __slots__ = ("_gzipped", "plain")

    def __init__(self, plain: bytes) -> None:
        self.plain = plain
        self._gzipped: bytes | None = None

    @property
    def gzipped_ready(self) -> bytes | None:
        return self._gzipped

    def gzipped(self) -> bytes:
        """The gzip form (compressing takes a few ms for a big run: call from a thread the first time)."""
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.plain, compresslevel=GZIP_LEVEL, mtime=0)
        return self._gzipped


def body_size(body: JsonBody) -> int:
    """What a cached detail costs: its JSON, room for its gzip form (about a tenth), and the objects."""
    return len(body.plain) + len(body.plain) // 8 + 200


def statuses_size(statuses: dict[int, str]) -> int:
    """What a cached id -> status mapping costs: about 100 bytes an entry (dict slot, int, shared str)."""
    return 100 * len(statuses) + 250


@dataclass(slots=True)
class _Built:
    body: JsonBody
    version: int
    at: float


class RunViews:
    """Run summaries and details, with the caches that keep them cheap."""

    def __init__(
        self,
        project: Project,
        state: StateStore,
        runs: RunManager,
        *,
        active_ttl_s: float = 0.1,
        cache_bytes: int = 32 * 1024 * 1024,
        checks: CheckResults | None = None,
    ) -> None:
        self.project = project
        self.state = state
        self.runs = runs
        self.checks = checks  # where the data-quality checks' results come from (None: none shown)
        self.active_ttl_s = active_ttl_s
        self._names = {oid: obj.name for oid, obj in project.objects.items()}
        # Finished runs (they cannot change): three quarters of the budget for details, a quarter for statuses.
        self._details: ByteLru[str, JsonBody] = ByteLru(cache_bytes - cache_bytes // 4, body_size)
        self._statuses: ByteLru[str, dict[int, str]] = ByteLru(cache_bytes // 4, statuses_size)
        self._active: tuple[str, _Built] | None = None
        self._build_lock = threading.Lock()
        self._refreshing = False  # a build of the active run's detail is under way

    # ----- GET /runs/{id} ---------------------------------------------------------------------------

    def cached_detail(self, run_id: str) -> JsonBody | None:
        """The encoded detail when a fresh copy is cached (cheap: safe on the event loop).

        While one request rebuilds the active run's detail, the others get the previous copy at once.
        """
        finished = self._details.get(run_id)
        if finished is not None:
            return finished
        active = self.runs.active
        cached = self._active
        if active is None or cached is None or cached[0] != run_id or active.run_id != run_id:
            return None
        built = cached[1]
        if built.version == active.version or self._refreshing or time.monotonic() - built.at < self.active_ttl_s:
            return built.body
        return None

    def detail(self, run_id: str) -> JsonBody:
        """The encoded ``RunDetail`` of ``run_id``; raises RunNotFound (blocking: call from a thread)."""
        with self._build_lock:
            cached = self.cached_detail(run_id)
            if cached is not None:
                return cached
            active = self.runs.active
            if active is not None and active.run_id == run_id:
                self._refreshing = True
                try:
                    version = active.version
                    # The coordinator mutates these states in its thread: each field read is current, good enough here.
                    body = JsonBody(self._encode_detail(active.record, list(active.coordinator.states.values())))
                    self._active = (run_id, _Built(body, version, time.monotonic()))
                finally:
                    self._refreshing = False
                return body
            record = find_run(self.state, self.project.name, run_id)
            body = JsonBody(self._encode_detail(record, list(self.state.object_states(run_id).values())))
            if record.status not in RESUMABLE_RUN_STATUSES:
                self._details.put(run_id, body)
            return body

    def _encode_detail(self, record: RunRecord, states: list[ObjectState]) -> bytes:
        states.sort(key=lambda s: s.object_id)
        names = self._names
        detail = run_summary(record, count_statuses(s.status for s in states), self._gone(record))
        detail["options"] = record.options
        objects = [object_run(s, names.get(s.object_id)) for s in states]
        checks = self.check_results(record)
        if checks:
            for entry in objects:
                with_checks(entry, checks.get(entry["object_id"], []))
        detail["objects"] = objects
        return _encoder.encode(detail)

    def check_results(self, record: RunRecord) -> dict[int, list[CheckResult]]:
        """Object id -> its data-quality checks' results in ``record``'s run (blocking: reads the bus)."""
        return {} if self.checks is None else self.checks.of_run(record)

    # ----- GET /runs ----------------------------------------------------------------------------------

    def summaries(self, limit: int) -> list[dict[str, Any]]:
        """Most recent runs of the project first, with their counts."""
        return [
            run_summary(record, count_statuses(self.statuses(record).values()), self._gone(record))
            for record in self._recent(limit)
        ]

    def _gone(self, record: RunRecord) -> bool:
        """Whether ``record`` is a run started by hand, ``running``, whose coordinator is gone (a ``sluice run`` killed:
        nobody holds its lease; marked ``interrupted`` by the next run started by hand)."""
        try:
            return coordinator_gone(self.state, record, time.time())
        except Exception:  # the store away: the listing says what it read
            return False

    def _recent(self, limit: int) -> list[RunRecord]:
        return self.state.list_runs(self.project.name, limit)

    def statuses(self, record: RunRecord) -> dict[int, str]:
        """Object id -> status in ``record``'s run (finished runs cached)."""
        active = self.runs.active
        if active is not None and active.run_id == record.run_id:
            return {oid: s.status for oid, s in list(active.coordinator.states.items())}
        cached = self._statuses.get(record.run_id)
        if cached is not None:
            return cached
        statuses = {oid: s.status for oid, s in self.state.object_states(record.run_id).items()}
        if record.status not in RESUMABLE_RUN_STATUSES:
            self._statuses.put(record.run_id, statuses)
        return statuses

    @property
    def cached_bytes(self) -> int:
        """What the finished runs' details and statuses cached take, in bytes (at most ``cache_bytes``)."""
        return self._details.bytes + self._statuses.bytes

    def latest(self) -> dict[int, tuple[str, str]]:
        """Object id -> (run id, status) in the most recent run that planned it (of the last 20 runs)."""
        result: dict[int, tuple[str, str]] = {}
        for record in self._recent(LATEST_RUNS):
            for oid, status in self.statuses(record).items():
                result.setdefault(oid, (record.run_id, status))
            if len(result) >= len(self.project.objects):
                break
        return result

    def object_state(self, run_id: str, object_id: int) -> ObjectState | None:
        active = self.runs.active
        if active is not None and active.run_id == run_id:
            state = active.coordinator.states.get(object_id)
            return None if state is None else dataclasses.replace(state)
        return self.state.object_states(run_id).get(object_id)


class ObjectViews:
    """The project's objects: definitions and graph (computed once), last states and outputs."""

    def __init__(self, project: Project, state: StateStore, lake: Lake, runs: RunViews) -> None:
        self.project = project
        self.state = state
        self.lake = lake
        self.runs = runs
        graph = project_graph(project)
        self._briefs: dict[int, dict[str, Any]] = {
            oid: {
                "id": oid,
                "name": obj.name,
                "stage": obj.stage,
                "kind": obj.kind,
                "parents": sorted(obj.parents),
                "children": sorted(graph.children.get(oid, ())),
            }
            for oid, obj in sorted(project.objects.items())
        }
        self._stages = [{"name": s.name, "first_id": s.min_id, "last_id": s.max_id} for s in project.stages]

    def listing(self) -> dict[str, Any]:
        latest = self.runs.latest()
        objects = [{**brief, "last_status": latest[oid][1] if oid in latest else None} for oid, brief in self._briefs.items()]
        return {"project": self.project.name, "stages": self._stages, "objects": objects}

    def _plain(self, object_id: int) -> dict[str, Any]:
        """The plain output of an object whose last load was a dated run's own output (``<name>.ld-<date>``,
        :mod:`sluice.lake.dated`): what runs without a date, models and other objects read, holding the latest
        logical date's data (not necessarily the last loaded run's: a backfill of earlier dates leaves it alone).
        Its location, rows and logical date; no location when it is not written (yet)."""
        obj = self.project.objects[object_id]
        layer = layer_of(self.project, obj)
        try:
            location = self.lake.current_location(layer, obj.name)
            held = held_logical_date(self.lake, layer, obj.name) if location else None
        except Exception as exc:  # the lake away: say the output cannot be read
            return {"location": None, "rows": 0, "sample_error": f"cannot read {layer}/{obj.name} from the lake: {exc}"}
        rows = count_rows(self.lake, location) if location else None
        return {"location": location, "rows": rows or 0, "logical_date": held.isoformat() if held else None}

    def detail(self, object_id: int) -> dict[str, Any]:
        brief = self._briefs.get(object_id)
        if brief is None:
            raise NotFound(f"project '{self.project.name}' has no object {object_id}; GET /objects lists them")
        latest = self.runs.latest().get(object_id)
        last_state: dict[str, Any] | None = None
        if latest is not None:
            state = self.runs.object_state(latest[0], object_id)
            if state is not None:
                last_state = {"run_id": latest[0], **object_run(state, brief["name"])}
                record = find_run(self.state, self.project.name, latest[0])
                with_checks(last_state, self.runs.check_results(record).get(object_id, []))
        output = self.state.latest_outputs(self.project.name).get(object_id)
        last_output: dict[str, Any] | None = None
        if output is not None:
            last_output = {
                "rows": output.rows,
                "location": output.location,
                "run_id": output.run_id,
                "loaded_at": output.loaded_at,
                "logical_date": None,
                "sample": None,
            }
            if output.location and DATED_MARK in output.location:
                last_output.update(self._plain(object_id))
            if last_output["location"]:
                sample, error = sample_rows(self.lake, last_output["location"])
                last_output["sample"] = sample
                if error is not None:
                    last_output["sample_error"] = error
        return {
            **brief,
            "last_status": None if latest is None else latest[1],
            "definition": self.project.objects[object_id].definition(),
            "metadata": dict(self.project.objects[object_id].metadata),
            "last_state": last_state,
            "last_output": last_output,
        }
