"""The web UI shows data-quality check results on their object, in a real browser (Debian's Chromium via
Playwright): a badge drawn on the node in the DAG (red when an ``error`` check failed, amber when only ``warn``
ones did, none when all passed) and the checks' list in the object panel (status, failing rows, sample).

Fed two ways, as a live page is: ``CheckFinished`` events (the SSE stream's) and a run snapshot's ``checks``
(``GET /runs/{id}``), in the page's offline harness (files served from disk); then a real ``sluice serve`` whose
run's checks pass, fail and warn, followed live and after a reload. Fixtures (Chromium, the browser)
come from test_ui_browser.py; without Chromium the test skips, or fails when ``CI=true``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page
from test_ui_browser import (  # noqa: F401
    Console,
    browser,
    event,
    node_fill,
    offline,
    serving,
    start_run,
    wait_until_finished,
)

import checks_stack

# dag_view.js CHECK_BADGES and COLOURS, as RGB
BADGE = {"failed": (0xB9, 0x1C, 0x1C), "warned": (0xF5, 0x9E, 0x0B)}
LOADED_FILL = (0xDC, 0xFC, 0xE7)
GRAPH = [
    {"id": 1, "name": "orders", "stage": "ingest", "parents": [], "children": [2, 3]},
    {"id": 2, "name": "orders_clean", "stage": "ingest", "parents": [1], "children": []},
    {"id": 3, "name": "orders_by_day", "stage": "ingest", "parents": [1], "children": []},
    {"id": 4, "name": "customers", "stage": "ingest", "parents": [], "children": []},
]


@pytest.fixture
def graph(offline: tuple[Page, Console]) -> tuple[Page, Console]:  # noqa: F811
    """The offline page (test_ui_browser.py's harness) showing GRAPH."""
    tab, _ = offline
    tab.evaluate("([o, s]) => window.sluiceUI.loadGraph(o, s, 'checks')", [GRAPH, [{"name": "ingest"}]])
    return offline


def check(
    object_id: int, name: str, status: str, *, severity: str = "error", failing: int = 0, attempt: int = 1
) -> dict[str, Any]:
    sample = [str(1000 + i) for i in range(min(failing, 3))]
    fields = {"check": name, "severity": severity, "status": status, "failing_rows": failing, "sample": sample}
    fields |= {"message": "", "duration_s": 0.02}
    return event("CheckFinished", object_id, attempt=attempt, **fields) | {"kind": name.split("_")[0]}


def apply(tab: Page, *events: dict[str, Any]) -> None:
    tab.evaluate("(events) => window.sluiceUI.applyEvents(events)", list(events))


def pixel(tab: Page, point: dict[str, float]) -> tuple[int, int, int]:
    """The colour the DAG's node canvas has at a viewport point."""
    rgb: list[int] = tab.evaluate(
        """(p) => {
            const canvas = document.querySelector("canvas.dag-nodes");
            const rect = canvas.getBoundingClientRect();
            const ratio = canvas.width / rect.width;
            const [x, y] = [Math.round((p.x - rect.left) * ratio), Math.round((p.y - rect.top) * ratio)];
            const data = canvas.getContext("2d").getImageData(x, y, 1, 1).data;
            return Array.from(data.slice(0, 3));
        }""",
        point,
    )
    return (rgb[0], rgb[1], rgb[2])


def badge(tab: Page, object_id: int) -> tuple[int, int, int]:
    """The colour of an object's check badge: left of its centre, clear of the white "!"."""
    tab.evaluate("window.sluiceUI.nextFrame()")
    point = tab.evaluate("(id) => window.sluiceUI.badgePoint(id)", object_id)
    return pixel(tab, {"x": point["x"] - 4, "y": point["y"]})


def panel_rows(tab: Page, object_id: int) -> list[tuple[str, str, str, str]]:
    """(check, status, failing rows, sample) of each row of the object panel's checks list."""
    tab.evaluate("(id) => window.sluiceUI.select(id)", object_id)
    tab.evaluate("window.sluiceUI.nextFrame()")
    rows = tab.get_by_test_id("object-checks").locator("tbody tr")
    found = []
    for i in range(rows.count()):
        row = rows.nth(i)
        status = row.get_attribute("data-status") or ""
        found.append(
            (
                row.get_attribute("data-check") or "",
                status,
                *(row.locator(f"[data-field={f}]").inner_text() for f in ("failing_rows", "sample")),
            )
        )
    return found  # type: ignore[return-value]


def test_check_events_put_a_badge_on_the_node_and_the_list_in_the_panel(graph: tuple[Page, Console]) -> None:
    tab, console = graph
    apply(tab, event("RunStarted", planned=[1, 2, 3, 4], targets=[2, 3, 4]))
    for oid in (1, 2, 3, 4):
        apply(tab, event("ObjectReady", oid), event("ObjectStarted", oid))
    apply(
        tab,
        check(1, "not_null_customer_id", "failed", failing=49),  # error severity: the object fails
        check(1, "row_count", "passed"),
        event("ObjectFailed", 1, error="check not_null_customer_id failed: 49 rows", retryable=False, final=True),
        check(2, "accepted_values_status", "failed", severity="warn", failing=39),  # warn: recorded, goes on
        event("ObjectLoaded", 2, rows=10),
        check(3, "unique_order_id", "passed"),
        event("ObjectLoaded", 3, rows=10),
        event("ObjectLoaded", 4, rows=10),  # no checks
    )
    states = {oid: tab.evaluate("(id) => window.sluiceUI.checkStateOf(id)", oid) for oid in (1, 2, 3, 4)}
    assert states == {1: "failed", 2: "warned", 3: "passed", 4: None}
    assert badge(tab, 1) == BADGE["failed"]
    assert badge(tab, 2) == BADGE["warned"]
    assert badge(tab, 3) not in BADGE.values()  # all passed: no badge
    assert badge(tab, 4) not in BADGE.values()
    assert node_fill(tab, 3) == LOADED_FILL  # the badge leaves the node's own colour alone

    assert panel_rows(tab, 1) == [("not_null_customer_id", "failed", "49", "1000, 1001, 1002"), ("row_count", "passed", "0", "—")]
    assert tab.get_by_test_id("object-checks").get_attribute("data-state") == "failed"
    assert panel_rows(tab, 2) == [("accepted_values_status", "warned", "39", "1000, 1001, 1002")]
    tab.evaluate("window.sluiceUI.select(4)")
    assert tab.get_by_test_id("object-checks").count() == 0  # no checks: no section

    # A retry's checks replace the failed attempt's; the panel open on the object follows live.
    tab.evaluate("window.sluiceUI.select(1)")
    apply(tab, event("ObjectReady", 1, attempt=2), check(1, "not_null_customer_id", "passed", attempt=2))
    assert tab.evaluate("window.sluiceUI.checkStateOf(1)") == "passed"
    rows = tab.get_by_test_id("object-checks").locator("tbody tr")
    assert rows.count() == 1 and rows.first.get_attribute("data-status") == "passed"
    assert badge(tab, 1) not in BADGE.values()
    assert console.errors == []


def test_a_snapshot_s_checks_show_as_the_events_do(graph: tuple[Page, Console]) -> None:
    tab, console = graph
    results = [
        {
            k: v
            for k, v in check(2, "unique_order_id", "failed", failing=18).items()
            if k not in ("type", "v", "run_id", "ts", "stage", "object_id")
        },
        {k: v for k, v in check(2, "freshness", "error").items() if k not in ("type", "v", "run_id", "ts", "stage", "object_id")},
    ]
    results[1]["message"] = "column created_at does not exist"
    detail = {
        "run_id": "r1",
        "status": "failed",
        "started_at": 1735812000.0,
        "objects": [
            {"object_id": 1, "stage": "ingest", "status": "loaded", "attempt": 1},
            {"object_id": 2, "stage": "ingest", "status": "failed", "attempt": 1, "checks": results, "check_state": "failed"},
        ],
    }
    apply(tab, event("RunStarted", planned=[1, 2], targets=[2]))
    tab.evaluate("(d) => window.sluiceUI.applySnapshot(d)", detail)
    tab.evaluate("(d) => window.sluiceUI.applySnapshot(d)", detail)  # twice: the same two results
    assert tab.evaluate("window.sluiceUI.checkStateOf(2)") == "failed"
    assert badge(tab, 2) == BADGE["failed"]
    assert panel_rows(tab, 2) == [
        ("unique_order_id", "failed", "18", "1000, 1001, 1002"),
        ("freshness", "error", "0", "column created_at does not exist"),  # the check could not run: its message
    ]
    assert console.errors == []


# ---- against a real sluice serve whose checks run (DuckDB over the lake) -----------------------------------


@pytest.fixture
def quality_server(tmp_path: Path) -> Iterator[str]:
    """``sluice serve`` of tests/checks_stack.py's project: checks that pass, fail and warn."""
    with serving(checks_stack.write_project(tmp_path / "quality")) as (url, _):
        yield url


def test_a_real_run_s_checks_show_live_and_after_a_reload(browser: Browser, quality_server: str) -> None:  # noqa: F811
    context = browser.new_context(viewport={"width": 1440, "height": 860})
    tab = context.new_page()
    console = Console(tab)
    try:
        tab.goto(quality_server)
        tab.evaluate("window.sluiceUI.ready")
        start_run(tab)
        wait_until_finished(tab)
        # Live, from the CheckFinished events of the SSE stream.
        assert tab.evaluate("window.sluiceUI.statusOf(1001)") == "failed"  # its error check failed
        assert tab.evaluate("window.sluiceUI.statusOf(2001)") == "skipped"
        assert badge(tab, 1001) == BADGE["failed"]
        assert badge(tab, 1002) == BADGE["warned"]
        orders = [
            ("not_null_order_id", "passed", "0", "—"),
            ("accepted_values_status", "failed", "1", "status=lost"),
        ]
        assert panel_rows(tab, 1001) == orders
        assert panel_rows(tab, 1002) == [
            ("not_null_email", "warned", "1", "customer_id=2, email=null"),
            ("unique_customer_id", "passed", "0", "—"),
        ]
        # After a reload, from the run's JSON (GET /runs/{id}) alone.
        tab.reload()
        tab.evaluate("window.sluiceUI.ready")
        wait_until_finished(tab)  # the run's JSON is fetched after the page is ready: drawn once it has come
        assert badge(tab, 1001) == BADGE["failed"]
        assert badge(tab, 1002) == BADGE["warned"]
        assert panel_rows(tab, 1001) == orders
        assert console.errors == []
    finally:
        context.close()
