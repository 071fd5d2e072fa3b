"""Backfills in ``sluice serve``: ``GET /backfills``, ``GET /backfills/{id}``, the Backfills panel of the web UI, and
the history pruner a ``history:`` section starts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from live_server import LiveServer
from playwright.sync_api import Browser, expect
from test_ui_browser import Console, browser, serving  # noqa: F401

from helpers import write_yaml
from sluice.project.load import load_project
from sluice.scheduling.backfills import Backfills, BackfillSpec, logical_dates
from sluice.scheduling.requests import RunRequest
from sluice.state.sqlite import SqliteStateStore

PROJECT = """
name: bf
history: {keep: 30d}
objects:
  - {id: 1001, name: raw_a}
"""


def _backfill(root: Path) -> str:
    """A finished backfill of three days whose second failed, written to the project's state store."""
    state = SqliteStateStore(root / ".sluice" / "state.db")
    try:
        backfills = Backfills(state, "bf")
        spec = BackfillSpec(date(2026, 1, 1), date(2026, 1, 3))
        backfill_id = backfills.create(spec, logical_dates(spec.start, spec.end)).backfill_id

        def run(request: RunRequest, started: Callable[[str], None], resume: str | None = None) -> str:
            started(f"run-{request.logical_date.day}")
            return "failed" if request.logical_date.day == 2 else "succeeded"

        backfills.run(backfill_id, run)
        return backfill_id
    finally:
        state.close()


def test_the_backfill_routes_give_each_date_and_404_an_unknown_id(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "bf", PROJECT)
    backfill_id = _backfill(tmp_path / "bf")
    with LiveServer(load_project(path)) as server, server.client() as client:
        assert server.services.pruner is not None and server.services.pruner.keep_s == 30 * 86400
        listed = client.get("/backfills").json()["backfills"]
        assert [b["backfill_id"] for b in listed] == [backfill_id]
        one = client.get(f"/backfills/{backfill_id}").json()
        assert one["status"] == "failed" and one["counts"] == {"succeeded": 2, "failed": 1}
        assert [(d["logical_date"][:10], d["status"], d["run_id"]) for d in one["dates"]] == [
            ("2026-01-01", "succeeded", "run-1"),
            ("2026-01-02", "failed", "run-2"),
            ("2026-01-03", "succeeded", "run-3"),
        ]
        missing = client.get("/backfills/nope")
        assert missing.status_code == 404 and "GET /backfills lists them" in missing.text
    assert server.services.pruner is None  # stopped with the server


def test_the_backfills_panel_shows_each_date_status(tmp_path: Path, browser: Browser) -> None:  # noqa: F811
    path = write_yaml(tmp_path / "bf", PROJECT)
    backfill_id = _backfill(tmp_path / "bf")
    with serving(path) as (url, _):
        context = browser.new_context(viewport={"width": 1440, "height": 860})
        page = context.new_page()
        console = Console(page)
        try:
            page.goto(url)
            item = page.get_by_test_id("backfill")
            expect(item).to_have_count(1)
            expect(page.get_by_test_id("backfills")).to_be_visible()
            expect(item.get_by_test_id("backfill-state")).to_have_text("failed")
            expect(item).to_contain_text(f"{backfill_id} · 2/3 succeeded · 1 failed")
            cells = item.get_by_test_id("backfill-date")
            expect(cells).to_have_count(3)
            expect(cells.nth(1)).to_have_attribute("data-status", "failed")
            expect(cells.nth(1)).to_have_attribute("title", "2026-01-02T00:00:00+00:00 · failed · run-2 · run run-2 failed")
            assert console.errors == []
        finally:
            context.close()


class _CountingStore(SqliteStateStore):
    """Counts the SELECTs the history tables run."""

    queries = 0

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        self.queries += 1
        return super()._query(sql, params)


def test_the_list_reads_every_backfill_s_dates_in_one_query_whatever_their_number(tmp_path: Path) -> None:
    import json

    from fastapi import FastAPI
    from fastapi.routing import APIRoute

    from sluice.server.backfills import backfill_routes

    store = _CountingStore(tmp_path / "state.db")
    try:
        backfills = Backfills(store, "bf")
        for month in range(1, 7):
            spec = BackfillSpec(date(2026, month, 1), date(2026, month, 3))
            backfills.create(spec, logical_dates(spec.start, spec.end))
        app = FastAPI()
        backfill_routes(app, "bf", lambda: store)
        route = next(r for r in app.routes if isinstance(r, APIRoute) and r.path == "/backfills")
        store.queries = 0
        listed = json.loads(route.endpoint(limit=20).body)["backfills"]
        assert len(listed) == 6 and all(len(b["dates"]) == 3 for b in listed)
        assert listed[0]["dates"][0]["logical_date"].startswith("2026-06-01")
        assert store.queries == 2  # the backfills, then all their dates: not one query per backfill
    finally:
        store.close()
