"""The object panel, against a real ``sluice serve`` in a real browser (Debian's Chromium via Playwright; fixtures
from test_ui_browser.py): an output the server cannot read says why (``sample_error`` of ``GET /objects/{id}``)
instead of looking like an empty table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from playwright.sync_api import Browser
from test_ui_browser import Console, browser, serving  # noqa: F401


def test_an_output_that_cannot_be_read_shows_why_in_the_panel(browser: Browser, tmp_path: Path) -> None:  # noqa: F811
    project = tmp_path / "sluice.yaml"
    (tmp_path / "people.csv").write_text("id,name\n1,a\n2,b\n", encoding="utf-8")
    project.write_text("objects:\n  - {id: 1001, name: people, source: {type: csv, path: people.csv}}\n", encoding="utf-8")
    ran = subprocess.run([sys.executable, "-m", "sluice", "run", str(project)], capture_output=True, text=True, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    output = tmp_path / ".sluice" / "lake" / "raw" / "people.parquet"
    output.write_bytes(b"not parquet")  # damaged after the run
    with serving(project) as (url, _):
        detail = httpx.get(f"{url}/objects/1001").json()
        why = detail["last_output"]["sample_error"]
        assert why.startswith("cannot read ") and "people.parquet" in why
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        try:
            tab = context.new_page()
            console = Console(tab)
            tab.goto(url)
            tab.evaluate("window.sluiceUI.ready")
            tab.evaluate("window.sluiceUI.select(1001)")
            shown = tab.get_by_test_id("object-sample-error")
            shown.wait_for()
            assert shown.inner_text() == why
            assert tab.get_by_text("no columns (no data)").count() == 0
            assert console.errors == []
        finally:
            context.close()
