"""Backfills in ``sluice serve``: ``GET /backfills`` (the project's, most recent first, with per-date status) and
``GET /backfills/{id}`` (one, with every date), read from the state store (docs/backfills.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Query
from pydantic import BaseModel, Field
from starlette.responses import Response

from sluice.errors import BackfillNotFound
from sluice.scheduling.backfills import backfill_json
from sluice.server.errors import NotFound, json_response
from sluice.state.base import StateStore


class BackfillDateEntry(BaseModel):
    logical_date: str = Field(description="ISO 8601, timezone-aware")
    status: str = Field(description="pending, running, succeeded or failed")
    run_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None


class BackfillEntry(BaseModel):
    backfill_id: str
    status: str = Field(
        description="running (or interrupted, resumable), succeeded, failed, refused (it shared a date with another "
        "backfill being run before any of its dates ran)"
    )
    created_at: float
    finished_at: float | None = None
    spec: dict[str, Any] = Field(description="from, to, targets, schedule, cron, parallel, timezone")
    counts: dict[str, int] = Field(description="Dates per status")
    dates: list[BackfillDateEntry]


class BackfillList(BaseModel):
    backfills: list[BackfillEntry]


def backfill_routes(app: FastAPI, project: str, state: Callable[[], StateStore]) -> None:
    """Add the backfill routes; ``state()`` gives the server's state store once started."""

    @app.get(
        "/backfills", summary="The project's backfills, most recent first, with per-date status", response_model=BackfillList
    )
    def list_backfills(limit: Annotated[int, Query(ge=1, le=200, description="How many backfills.")] = 20) -> Response:
        store = state()
        records = store.list_backfills(project, limit)
        dates = store.backfills_dates([r.backfill_id for r in records])  # one query for all: not one per backfill
        return json_response({"backfills": [backfill_json(r, dates[r.backfill_id]) for r in records]})

    @app.get("/backfills/{backfill_id}", summary="One backfill with every date's status and run", response_model=BackfillEntry)
    def get_backfill(backfill_id: str) -> Response:
        store = state()
        try:
            record = store.get_backfill(backfill_id)
        except BackfillNotFound:
            record = None
        if record is None or record.project != project:
            raise NotFound(f"no backfill with id '{backfill_id}' in project '{project}'; GET /backfills lists them")
        return json_response(backfill_json(record, store.backfill_dates(backfill_id)))
