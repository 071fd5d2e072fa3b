"""The scheduler inside ``sluice serve``: ``GET /schedules`` and the web UI's Schedules panel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from live_server import LiveServer
from playwright.sync_api import Browser, expect
from test_ui_browser import Console, browser, serving  # noqa: F401

from helpers import wait_for, write_yaml
from sluice.project.load import load_project
from sluice.server.services import ServerSettings
from sluice.state.base import TickRecord
from sluice.state.sqlite import SqliteStateStore

PROJECT = """
name: shop
objects:
  - {id: 1001}
  - {id: 2001, parents: [1001]}
schedules:
  minutely: {cron: "* * * * *", targets: [2001]}
  nightly: {cron: "0 2 * * *", timezone: Europe/Paris, enabled: false}
"""


def scheduled_project(folder: Path) -> Path:
    """The project, its every-minute schedule last fired two minutes ago: the newest due tick fires at once."""
    path = write_yaml(folder, PROJECT)
    store = SqliteStateStore(folder / ".sluice" / "state.db")
    before = (datetime.now(UTC) - timedelta(minutes=2)).replace(second=0, microsecond=0)
    store.record_ticks([TickRecord("shop", "minutely", before.isoformat(), "fired", 1.0)])
    store.close()
    return path


def test_serve_hosts_the_scheduler_and_lists_the_schedules(tmp_path: Path) -> None:
    project = load_project(scheduled_project(tmp_path))
    with LiveServer(project, ServerSettings()) as server, server.client() as client:

        def ran() -> bool:
            last = client.get("/schedules").json()["schedules"][0]["last_run"]
            return last is not None and last["status"] == "succeeded"

        wait_for(ran, 60, "the scheduled run to succeed")
        body = client.get("/schedules").json()
        assert (body["project"], body["hosted"], body["leader"]) == ("shop", True, True)
        minutely, nightly = body["schedules"]
        assert (minutely["name"], minutely["targets"], len(minutely["next"])) == ("minutely", [2001], 3)
        assert (nightly["enabled"], nightly["next"], nightly["timezone"]) == (False, [], "Europe/Paris")
        run = client.get(f"/runs/{minutely['last_run']['run_id']}").json()
        assert run["status"] == "succeeded"
        assert body["lease"]["holder"] == server.services.scheduler.scheduler.holder  # type: ignore[union-attr]
    with LiveServer(project, ServerSettings(scheduler=False)) as server, server.client() as client:
        body = client.get("/schedules").json()
        assert (body["hosted"], body["leader"]) == (False, False)
        assert body["lease"] is None  # released by the first server on the way out


def test_the_schedules_panel_shows_each_schedule(browser: Browser, tmp_path: Path) -> None:  # noqa: F811
    path = scheduled_project(tmp_path / "p")
    with serving(path) as (url, process):
        context = browser.new_context(viewport={"width": 1440, "height": 860})
        page = context.new_page()
        console = Console(page)
        try:
            page.goto(url)
            rows = page.get_by_test_id("schedule")
            expect(rows).to_have_count(2)
            expect(page.get_by_test_id("schedules")).to_be_visible()
            minutely = rows.nth(0).locator("td")
            expect(minutely.nth(0)).to_have_text("minutely")
            expect(minutely.nth(1)).to_have_text("* * * * * UTC")
            expect(minutely.nth(3)).to_contain_text("succeeded", timeout=30_000)
            expect(rows.nth(1).locator("td").nth(2)).to_have_text("disabled")
            assert console.errors == []
        finally:
            context.close()
        process.terminate()
        assert process.wait(timeout=30) == 0
