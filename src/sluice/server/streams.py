"""Streaming objects in ``sluice serve``: hosted with ``--stream ID`` (or ``--stream all``), shown at ``GET /streams``.

``GET /streams`` lists every streaming object of the project: a hosted one with its live status (state,
records/s, bytes/s, lag per partition, last committed micro-batch, dead letters, late records;
:meth:`~sluice.streaming.status.StreamStatus.snapshot`), one run elsewhere (``sluice stream``) with what its
last commit in the lake says (state ``elsewhere``; rates unknown).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field
from starlette.responses import Response

from sluice.errors import ConfigError
from sluice.lake.base import Lake
from sluice.project.model import Project, layer_of
from sluice.server.errors import json_response
from sluice.streaming.host import StreamHost


def stream_ids(project: Project, chosen: Sequence[str]) -> list[int]:
    """The object ids ``--stream`` names (``all``: every streaming object). Raises ConfigError for another value."""
    if not chosen:
        return []
    every = [obj.id for obj in project.objects.values() if obj.streaming is not None]
    if "all" in chosen:
        return every
    ids = []
    for value in chosen:
        if not value.isdigit() or int(value) not in every:
            listed = ", ".join(map(str, every)) or "none"
            raise ConfigError(
                f"--stream {value!r} is not a streaming object of the project (streaming objects: {listed}, or all)"
            )
        ids.append(int(value))
    return ids


def host_streams(project: Project, lake: Lake, chosen: Sequence[str]) -> StreamHost | None:
    """The started host of the streaming objects ``--stream`` names, or None when it names none."""
    ids = stream_ids(project, chosen)
    if not ids:
        return None
    host = StreamHost(project, lake, ids)
    host.start()
    return host


def streams_body(project: Project, lake: Lake, host: StreamHost | None) -> dict[str, Any]:
    """The JSON of ``GET /streams`` (see the module)."""
    hosted = {status.object_id: status.snapshot() for status in (host.statuses if host is not None else [])}
    found = []
    for obj in project.objects.values():
        if obj.streaming is None:
            continue
        if obj.id in hosted:
            found.append(hosted[obj.id])
            continue
        error: str | None = None
        try:
            commit = lake.last_commit(layer_of(project, obj), obj.name)
        except Exception as exc:  # the lake's answer is shown, not raised
            commit, error = None, str(exc)
        last = None
        if commit is not None:
            last = {
                "batch": commit.get("batch"),
                "at": commit.get("at"),
                "rows": commit.get("rows"),
                "records": commit.get("records"),
            }
        found.append({"id": obj.id, "name": obj.name, "state": "elsewhere", "error": error, "last_batch": last})
    return {"streams": found}


class StreamEntry(BaseModel):
    id: int
    name: str
    state: str = Field(
        description="starting, running, lake_unreachable (waiting for the lake, nothing lost), stopping, stopped, "
        "failed; elsewhere: not hosted by this server"
    )
    error: str | None = None
    records_per_s: float | None = None
    bytes_per_s: float | None = None
    records: int | None = None
    lag: list[dict[str, Any]] | None = Field(None, description="Per topic and partition: records behind the high watermark")
    lag_total: int | None = None
    dead_letters: int | None = None
    late_records: int | None = None
    last_batch: dict[str, Any] | None = Field(None, description="The last committed micro-batch: batch, at (unix s), rows")


class StreamList(BaseModel):
    streams: list[StreamEntry]


def stream_routes(app: FastAPI, project: Project, lake: Any, host: Any) -> None:
    """Add ``GET /streams``; ``lake()`` and ``host()`` give the server's lake and stream host once started."""

    @app.get(
        "/streams",
        summary="The project's streaming objects: state, rates, lag per partition, last batch",
        response_model=StreamList,
    )
    def list_streams() -> Response:
        return json_response(streams_body(project, lake(), host()))
