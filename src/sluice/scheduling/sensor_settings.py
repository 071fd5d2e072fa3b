"""The ``sensors:`` section of ``sluice.yaml`` (docs/sensors.md)::

sensors:
  landing:
    type: files                 # new or changed files matching a glob under the project folder
    path: incoming/*.csv
    targets: [orders]           # object ids or names (ancestors run with them); or tags: [...]; neither: all
    min_interval: 5m            # at most one run this often (default 30s)
    timezone: Europe/Paris      # the zone its runs' {{ ds }} counts days in (default UTC)
  drops:
    type: s3                    # new or changed keys under an S3 prefix
    url: s3://landing/orders/?endpoint=http://127.0.0.1:29000
  orders_changed:
    type: table                 # a sync's captured table changed (its change events on the bus)
    sync: shop
    table: public.orders
  upstream_done:
    type: run                   # another project's run succeeded
    state: postgresql://postgres@127.0.0.1:25432/sluice
    project: ingest
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from sluice.plugins.base import Settings
from sluice.scheduling.cron import check_timezone
from sluice.scheduling.requests import RunRequest
from sluice.streaming.durations import EXAMPLES, parse_duration

SensorType = Literal["files", "s3", "table", "run"]
_NEEDS: dict[str, tuple[str, ...]] = {"files": ("path",), "s3": ("url",), "table": ("sync", "table"), "run": ("state", "project")}


class SensorKeys(Settings):
    """A sensor's keys, each checked by itself (what :class:`SensorSettings` checks across them: :func:`sensor_problems`)."""

    type: Annotated[SensorType, Meta(description="files, s3, table or run.")]
    path: Annotated[str | None, Meta(description="files: a glob relative to the project folder (incoming/*.csv, **).")] = None
    url: Annotated[
        str | None, Meta(description="s3: s3://bucket/prefix?endpoint=http://host:port (credentials as for the S3 lake).")
    ] = None
    sync: Annotated[str | None, Meta(description="table: the sync (syncs:) that captures the table.")] = None
    table: Annotated[str | None, Meta(description="table: the captured source table, namespace.table.")] = None
    state: Annotated[str | None, Meta(description="run: the other project's state store URL.")] = None
    project: Annotated[str | None, Meta(description="run: the other project's name.")] = None
    targets: Annotated[list[int | str] | None, Meta(description="Objects to run (ids or names; default: all).")] = None
    tags: Annotated[list[str] | None, Meta(description="Run the objects carrying any of these tags.")] = None
    min_interval: Annotated[
        str | int | float, Meta(description=f"Least time between two runs the sensor starts: {EXAMPLES}.")
    ] = "30s"
    timezone: Annotated[
        str, Meta(description="IANA time zone its runs' {{ ds }} counts days in (the logical date is when it fired).")
    ] = "UTC"
    enabled: Annotated[bool, Meta(description="false: the sensor is listed but never polled.")] = True


def sensor_problems(keys: SensorKeys, wrong: Collection[str] = ()) -> list[tuple[str | None, str]]:
    """Every problem across a sensor's keys, each ``(the key it is about or None, message)``: what its ``type`` needs
    and does not take, ``targets`` and ``tags`` together, its time zone and ``min_interval``. ``wrong``: keys given
    but wrong by themselves (reported so, at their defaults in ``keys``): not judged again."""
    problems: list[tuple[str | None, str]] = []
    if "type" not in wrong:
        missing = [key for key in _NEEDS[keys.type] if getattr(keys, key) is None and key not in wrong]
        if missing:
            problems.append((None, f"type {keys.type} needs {' and '.join(missing)}"))
        others = [key for needs in _NEEDS.values() for key in needs if key not in _NEEDS[keys.type]]
        given = [key for key in dict.fromkeys(others) if getattr(keys, key) is not None]
        if given:
            problems.append((given[0], f"type {keys.type} takes no {', '.join(given)}"))
    if keys.targets is not None and keys.tags is not None:
        problems.append(("tags", "give targets or tags, not both"))
    problem = check_timezone(keys.timezone)
    if problem is not None:
        problems.append(("timezone", problem))
    try:
        parse_duration(keys.min_interval)
    except ValueError as exc:
        problems.append(("min_interval", f"min_interval: {exc}"))
    return problems


class SensorSettings(SensorKeys):
    """One sensor: what it watches (``type`` and its keys), what it runs, and how often at most."""

    def __post_init__(self) -> None:
        problems = sensor_problems(self)
        if problems:
            raise ValueError(problems[0][1])

    @property
    def min_interval_s(self) -> float:
        """``min_interval`` in seconds."""
        return parse_duration(self.min_interval) / 1e6


class SensorSpec(msgspec.Struct, frozen=True):
    """A checked sensor: its name, settings and the object ids it runs (None: the whole project)."""

    name: str
    settings: SensorSettings
    targets: tuple[int, ...] | None = None

    def request(self, when: datetime) -> RunRequest:
        """The run this sensor asks for when it fires at ``when`` (timezone-aware): that moment is its logical date,
        its key ``<name>@<when, ISO 8601>`` (recorded as the tick's logical date)."""
        return RunRequest(self.name, "sensor", when, self.targets, f"{self.name}@{when.isoformat()}", self.settings.timezone)

    def recorded_request(self, key: str) -> RunRequest:
        """The request recorded under ``key`` (:meth:`request`'s), rebuilt by a scheduler starting it after a restart."""
        return self.request(datetime.fromisoformat(key.rpartition("@")[2]))
