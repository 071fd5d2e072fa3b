"""``GET /schedules`` in ``sluice serve``: the project's schedules, next fire times, last tick and run
(:mod:`sluice.scheduling.listing`), and whether this server hosts the scheduler (``hosted``, ``leader``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field
from starlette.responses import Response

from sluice.project.model import Project
from sluice.scheduling.host import SchedulerHost
from sluice.scheduling.listing import schedules_view
from sluice.server.errors import json_response
from sluice.state.base import StateStore


class ScheduleEntry(BaseModel):
    name: str
    cron: str
    timezone: str
    targets: list[int] | None = Field(None, description="Object ids (null: the whole project)")
    catch_up: str
    max_active_runs: int
    wait_for: list[str]
    enabled: bool
    next: list[str] = Field(description="Next fire times, ISO 8601 in UTC")
    last_tick: dict[str, Any] | None = Field(None, description="logical_date, status (fired, missed, baseline), reason, run")
    last_run: dict[str, Any] | None = Field(None, description="logical_date, run_id, status of the last run started")
    error: str | None = Field(None, description="Why the schedule does not fire, or its last tick's run did not start")


class ScheduleList(BaseModel):
    project: str
    now: str
    hosted: bool = Field(description="Whether this server runs a scheduler (sluice serve --scheduler)")
    leader: bool = Field(description="Whether this server's scheduler holds the lease")
    lease: dict[str, Any] | None = None
    schedules: list[ScheduleEntry]


def schedule_routes(
    app: FastAPI, project: Project, state: Callable[[], StateStore], host: Callable[[], SchedulerHost | None]
) -> None:
    """Add ``GET /schedules``; ``state()`` and ``host()`` give the server's state store and scheduler once started."""

    @app.get("/schedules", summary="The project's schedules: next fire times, last tick and run", response_model=ScheduleList)
    def list_schedules() -> Response:
        hosted = host()
        view = schedules_view(project, state(), problems=hosted.scheduler.problems if hosted is not None else None)
        view["hosted"] = hosted is not None
        view["leader"] = hosted is not None and hosted.scheduler.leader
        return json_response(view)
