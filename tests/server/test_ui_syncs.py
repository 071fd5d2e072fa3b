"""The web UI's Syncs panel in a real browser (Debian's Chromium via Playwright) against a real ``sluice serve``
whose project holds a sync status file (written by sluice.cdc.status.write_status, as a running sync does).

Fixtures (Chromium, the browser, the free port) come from test_ui_browser.py; without Chromium the test skips,
or fails when ``CI=true``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect
from test_ui_browser import SEED, Console, browser, serving  # noqa: F401

from sluice.cdc.status import SyncStatus, TableStatus, write_status


def write_employees_status(project: Path, state: str = "streaming", inserts: int = 3) -> None:
    table = TableStatus(
        "hr.employes",
        "public.employes",
        "hr -> warehouse",
        state=state,  # type: ignore[arg-type]
        position="mysql-bin.000003:4567",
        lag_s=0.25,
        applied={"snapshot": 80, "insert": inserts},
        conflicts=1,
        dead_letters=2,
        snapshot_rows=80,
        snapshot_total=100,
    )
    status = SyncStatus("employees", "hr", "warehouse", "hr -> warehouse", state="streaming", tables=[table])
    write_status(project / ".sluice", status)


@pytest.fixture
def project_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    project = tmp_path / "seed-002"
    shutil.copytree(SEED, project, ignore=shutil.ignore_patterns(".sluice", "__pycache__"))
    write_employees_status(project)
    with serving(project, "--simulate") as (url, _):
        yield url, project


def test_the_syncs_panel_shows_each_table_and_follows_its_status(browser: Browser, project_server: tuple[str, Path]) -> None:  # noqa: F811
    url, project = project_server
    context = browser.new_context(viewport={"width": 1440, "height": 860})
    page = context.new_page()
    console = Console(page)
    try:
        page.goto(url)
        row = page.get_by_test_id("sync-table")
        expect(row).to_have_count(1)
        expect(page.get_by_test_id("syncs")).to_be_visible()
        cells = row.locator("td")
        expect(cells.nth(0)).to_have_text("hr.employes → public.employes")
        expect(cells.nth(1)).to_have_text("streaming")
        expect(cells.nth(2)).to_have_text("mysql-bin.000003:4567")
        expect(cells.nth(3)).to_have_text("0.25 s")
        expect(cells.nth(4)).to_have_text("snap 80 · ins 3")
        expect(cells.nth(5)).to_have_text("1")
        expect(cells.nth(6)).to_have_text("2")
        expect(cells.nth(7)).to_have_text("80 / 100 (80%)")
        write_employees_status(project, state="error", inserts=7)  # the panel polls /syncs: the change shows
        expect(cells.nth(1)).to_have_text("error", timeout=15_000)
        expect(cells.nth(4)).to_have_text("snap 80 · ins 7")
        assert console.errors == []
    finally:
        context.close()
