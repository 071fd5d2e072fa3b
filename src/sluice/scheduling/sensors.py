"""Sensors: start a run when something outside the schedule changes (docs/sensors.md).

Four kinds, each comparing what it sees now with its **cursor** in the state store:

- ``files``: the files matching a glob under the project folder, by path, size and modification time;
- ``s3``: the keys under an S3 prefix (listed with the S3 lake's client, :func:`sluice.lake.s3.s3_filesystem`),
  by key, size and modification time;
- ``table``: the end offset of a synced table's change topic (``sluice.cdc.<sync>.<source>.<table>``,
  :func:`sluice.cdc.events.change_topic`), every partition of it: capture published change events since the last
  look;
- ``run``: the latest succeeded run of another project in its state store (by run id).

:meth:`Sensors.poll` looks at each sensor whose ``min_interval`` has passed since it last fired (and not more often
than every :data:`LOOK_S` seconds, or ``min_interval`` if shorter, however often it is polled) and returns one
:class:`RunRequest` per sensor that saw a change (``trigger="sensor"``, the logical date is ``now``, the key
``<name>@<now>``). Standalone (``sluice sensors --poll``) the cursor itself records the request (one write: the
cursor and the key of the request it fired). Hosted by the scheduler (``hosted=True``), the new cursor is not saved
by the sensor: :meth:`Sensors.cursor_for` hands it to the scheduler, which saves it in the same transaction as the
request's tick (``StateStore.record_ticks(ticks, cursors)``), the tick carrying the id its run will have. The request
is durable before its run starts: a scheduler that dies before the run is recorded leaves the tick, which the next
one to take the lease starts under that run id (exactly once), and the change does not fire a second request; a
step that fails before the tick is recorded saves no cursor, so the change fires again. A new sensor's first
look treats everything already there as new. The model is Dagster's sensors (a cursor per sensor, a minimum
interval between evaluations) and Airflow's ``FileSensor``/``S3KeySensor``/``ExternalTaskSensor``, as one poll
instead of a task that waits.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sluice.bus.base import Bus
from sluice.cdc.events import change_topic
from sluice.errors import ConfigError
from sluice.project.model import Project
from sluice.scheduling.requests import RunRequest
from sluice.scheduling.sensor_settings import SensorSpec
from sluice.state.base import SensorCursor, StateStore

log = logging.getLogger("sluice.sensors")
LOOK_S = 30.0
"""A sensor looks (lists its folder, prefix, topic or runs) at most this often, or every ``min_interval`` if shorter:
the scheduler polls every second."""
Seen = dict[str, list[int]]
"""Path or key -> [size in bytes, modification time in ns]."""


def _changed_files(seen: Seen, before: dict[str, Any]) -> bool:
    old = before.get("seen", {})
    return any(old.get(key) != value for key, value in seen.items())


def watch_files(project: Project, spec: SensorSpec, before: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """``files``: (new or changed files?, the new cursor value)."""
    pattern = spec.settings.path or ""
    seen: Seen = {}
    for path in sorted(project.root.glob(pattern)):
        if path.is_file():
            stat = path.stat()
            seen[path.relative_to(project.root).as_posix()] = [stat.st_size, stat.st_mtime_ns]
    return _changed_files(seen, before), {"seen": seen}


def s3_location(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix?endpoint=...`` as (``bucket/prefix``, endpoint). Raises ConfigError."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ConfigError(f"s3 sensor: {url!r} is not s3://bucket/prefix[?endpoint=http://host:port]")
    endpoint = parse_qs(parts.query).get("endpoint", [""])[0]
    return f"{parts.netloc}/{parts.path.strip('/')}".rstrip("/"), endpoint


def watch_s3(project: Project, spec: SensorSpec, before: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """``s3``: (new or changed keys?, the new cursor value)."""
    import pyarrow.fs as pafs

    from sluice.lake.s3 import s3_filesystem

    folder, endpoint = s3_location(spec.settings.url or "")
    fs = s3_filesystem(endpoint, request_timeout_s=20.0)
    bucket = folder.partition("/")[0]
    if fs.get_file_info(bucket).type == pafs.FileType.NotFound:  # a listing of it would be empty: never firing
        where = urlsplit(endpoint).hostname or "" if endpoint else ""
        at = f" at {where}:{urlsplit(endpoint).port}" if where else ""
        raise ConfigError(
            f"s3 sensor {spec.name}: bucket '{bucket}' does not exist{at}; create it or correct the sensor's url (s3://{folder})"
        )
    infos = fs.get_file_info(pafs.FileSelector(folder, recursive=True, allow_not_found=True))
    seen: Seen = {
        info.path[len(folder) + 1 :]: [info.size or 0, info.mtime_ns or 0] for info in infos if info.type == pafs.FileType.File
    }
    return _changed_files(seen, before), {"seen": dict(sorted(seen.items()))}


def table_topic(project: Project, spec: SensorSpec) -> str:
    """The change topic of a ``table`` sensor's table."""
    sync = project.sync(spec.settings.sync)
    return change_topic(sync.settings.name, sync.settings.source, spec.settings.table or "")


def watch_table(bus: Bus, topic: str, before: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """``table``: (has any partition of the change topic grown?, the new cursor value: the end offset of each
    partition, ``{"offsets": {"0": 12, "1": 40}}``). A cursor of the one-partition form (``{"offset": 12}``) is
    partition 0's."""
    seen = before.get("offsets") or ({"0": before["offset"]} if "offset" in before else {})
    ends = {str(partition): end for partition, end in sorted(bus.end_offsets(topic).items())}
    return any(end > int(seen.get(partition, 0)) for partition, end in ends.items()), {"offsets": ends}


class Sensors:
    """The sensors of one project, polled by whoever hosts them (the scheduler service, ``sluice serve``).

    ``state`` keeps the cursors; ``bus`` is where ``table`` sensors find change topics. ``hosted``: the host (the
    scheduler) saves a request's cursor with its tick (:meth:`cursor_for`, see the module) instead of the sensor.
    """

    def __init__(self, project: Project, state: StateStore, bus: Bus, *, hosted: bool = False) -> None:
        self.project = project
        self.state = state
        self.bus = bus
        self.hosted = hosted
        self._pending: dict[str, SensorCursor] = {}  # request key -> its cursor, until the host takes it
        self._looked: dict[str, float] = {}  # sensor -> when it last looked (epoch seconds)
        self.errors: dict[str, str] = {}
        """The last error of each sensor whose look failed (cleared by a good look)."""
        self._stores: dict[str, StateStore] = {}

    def poll(self, now: datetime) -> list[RunRequest]:
        """Look at each enabled sensor due at ``now`` (timezone-aware); the runs to start, in sensor order."""
        self._pending.clear()  # requests of an earlier poll the host never took: their changes fire again
        requests = []
        for spec in self.project.sensors:
            if not spec.settings.enabled:
                continue
            try:
                request = self._poll_one(spec, now)
            except Exception as exc:  # one sensor failing leaves the others be
                error = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                if self.errors.get(spec.name) != error:  # once per distinct error, not at every look
                    log.error("sensor %s: %s", spec.name, error)
                self.errors[spec.name] = error
                self._keep_error(spec, error, now.timestamp())
                continue
            if self.errors.pop(spec.name, None) is not None:
                log.warning("sensor %s: looks again without error", spec.name)
            if request is not None:
                requests.append(request)
        return requests

    def _poll_one(self, spec: SensorSpec, now: datetime) -> RunRequest | None:
        at = now.timestamp()
        interval = spec.settings.min_interval_s
        if at - self._looked.get(spec.name, float("-inf")) < min(interval, LOOK_S):
            return None
        cursor = self.state.sensor_cursor(self.project.name, spec.name)
        if cursor is not None and cursor.fired_at is not None and at - cursor.fired_at < interval:
            return None
        self._looked[spec.name] = at
        before = cursor.value if cursor is not None else {}
        changed, value = self.look(spec, before)
        if not changed:
            if value != before:  # e.g. files removed: forget them, fire nothing
                fired = (cursor.fired_at, cursor.last_key) if cursor is not None else (None, None)
                self.state.save_sensor_cursor(self.project.name, SensorCursor(spec.name, value, *fired, at))
            return None
        request = spec.request(now)
        cursor = SensorCursor(spec.name, value, at, request.key, at)
        if self.hosted:
            self._pending[request.key] = cursor
        else:
            self.state.save_sensor_cursor(self.project.name, cursor)
        return request

    def _keep_error(self, spec: SensorSpec, error: str, at: float) -> None:
        """Save ``error`` in the sensor's cursor (``value["error"]``, cleared by its next good look), so a listing in
        another process (``sluice sensors``, ``GET /sensors``) shows it; what the sensor had seen is kept."""
        try:
            cursor = self.state.sensor_cursor(self.project.name, spec.name)
            value = dict(cursor.value) if cursor is not None else {}
            if value.get("error") == error:
                return
            value["error"] = error
            fired = (cursor.fired_at, cursor.last_key) if cursor is not None else (None, None)
            self.state.save_sensor_cursor(self.project.name, SensorCursor(spec.name, value, *fired, at))
        except Exception as exc:  # the state store is down too: the error stays in memory (self.errors)
            log.debug("sensor %s: its error was not saved: %s", spec.name, exc)

    def cursor_for(self, request: RunRequest) -> SensorCursor | None:
        """The cursor to save with ``request``'s tick (hosted; None: not a request of the last poll, or standalone,
        where :meth:`poll` saved it already). Taken once."""
        return self._pending.pop(request.key, None)

    def look(self, spec: SensorSpec, before: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """(changed since ``before``?, the new cursor value) for one sensor."""
        kind = spec.settings.type
        if kind == "files":
            return watch_files(self.project, spec, before)
        if kind == "s3":
            return watch_s3(self.project, spec, before)
        if kind == "table":
            return watch_table(self.bus, table_topic(self.project, spec), before)
        return self._watch_run(spec, before)

    def _watch_run(self, spec: SensorSpec, before: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        from sluice.state.registry import open_state

        url = spec.settings.state or ""
        store = self._stores.get(url)
        if store is None:
            store = self._stores[url] = open_state(url, Path(self.project.root))
        runs = store.find_runs(spec.settings.project or "", status="succeeded", limit=1)
        if not runs:
            return False, before
        latest = {"run_id": runs[0].run_id, "finished_at": runs[0].finished_at}
        return latest["run_id"] != before.get("run_id"), latest

    def cursors(self) -> list[dict[str, Any]]:
        """Each sensor with its settings and cursor, as ``sluice sensors --json`` prints them."""
        saved = {c.name: c for c in self.state.sensor_cursors(self.project.name)}
        rows = []
        for spec in self.project.sensors:
            cursor = saved.get(spec.name)
            value = dict(cursor.value) if cursor is not None else None
            saved_error = value.pop("error", None) if value is not None else None
            rows.append(
                {
                    "name": spec.name,
                    "type": spec.settings.type,
                    "enabled": spec.settings.enabled,
                    "min_interval_s": spec.settings.min_interval_s,
                    "targets": list(spec.targets) if spec.targets is not None else None,
                    "fired_at": cursor.fired_at if cursor else None,
                    "last_key": cursor.last_key if cursor else None,
                    "cursor": value,
                    "error": self.errors.get(spec.name) or saved_error,
                }
            )
        return rows

    def close(self) -> None:
        """Close the other projects' state stores opened by ``run`` sensors."""
        self._pending.clear()
        for store in self._stores.values():
            store.close()
        self._stores.clear()


def hosted_sensors(project: Project, state: StateStore, bus: Bus) -> list[Sensors]:
    """The sources a scheduler hosting ``project`` polls: its sensors, each request's cursor saved with its tick
    (``hosted``), or none when the project has no enabled sensor. Pass them as ``Scheduler(..., sources=...)``."""
    if not any(spec.settings.enabled for spec in project.sensors):
        return []
    return [Sensors(project, state, bus, hosted=True)]
