"""The web UI in a real browser: Debian's Chromium driven by Playwright against a real ``sluice serve``.

The server runs examples/seed-002 (copied to a temporary folder, so its ``.sluice/`` state is thrown away)
with ``--simulate --delay-scale 0.02 --fail 2005``: 2005 fails after its retries (about 1.5 s of backoff),
3004 and 3006 are skipped, every other object loads. Each test starts its run from the page's button.

Chromium comes from ``/usr/bin/chromium`` (``scripts/chromium.sh`` installs it with apt-get when missing;
Playwright never downloads a browser here). Without it the tests skip, or fail when ``CI=true``.
A screenshot of the finished run is kept in ``tests/artifacts/``.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect, sync_playwright

from helpers import wait_for
from servers_fixtures import BROWSER_ARGS

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed-002"
STATIC = ROOT / "src" / "sluice" / "server" / "static"
OFFLINE_ORIGIN = "http://sluice.localhost"
ARTIFACTS = ROOT / "tests" / "artifacts"
STATUSES = ("pending", "ready", "running", "retrying", "loaded", "failed", "skipped")
FAILING = 2005
SERVER_START_S = 60
RUN_END_MS = 60_000
# Node fills (dag_view.js COLOURS) as RGB.
FILLS = {"retrying": (0xFF, 0xED, 0xD5), "failed": (0xFE, 0xE2, 0xE2), "loaded": (0xDC, 0xFC, 0xE7)}


def free_port() -> int:
    """A free port on 127.0.0.1 below 32768 (the ephemeral range starts there)."""
    for _ in range(200):
        port = random.randint(20_000, 32_000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 32000 on 127.0.0.1")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``sluice serve`` on seed-002 in a temporary copy; its base URL."""
    project = tmp_path_factory.mktemp("ui") / "seed-002"
    shutil.copytree(SEED, project, ignore=shutil.ignore_patterns(".sluice", "__pycache__"))
    with serving(project, "--simulate", "--delay-scale", "0.02", "--fail", str(FAILING)) as (url, _):
        yield url


@contextmanager
def serving(project: Path, *options: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``sluice serve PROJECT --port P OPTIONS`` (log in ``serve.log`` beside the project) until it answers /health;
    its base URL and process, stopped (SIGTERM, then SIGKILL after 20 s) on exit."""
    port = free_port()
    log = project.parent / "serve.log"
    command = [sys.executable, "-m", "sluice", "serve", str(project), "--port", str(port), *options]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=project.parent)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, log)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"sluice serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"sluice serve did not answer /health within {SERVER_START_S} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class Console:
    """The page's console errors and uncaught exceptions."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", self.on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} at {message.location}")


@pytest.fixture
def page(browser: Browser, server: str) -> Iterator[tuple[Page, Console]]:
    context = browser.new_context(viewport={"width": 1440, "height": 860})
    opened = context.new_page()
    console = Console(opened)
    opened.goto(server)
    opened.evaluate("window.sluiceUI.ready")
    yield opened, console
    context.close()


def shown_counts(page: Page) -> dict[str, int]:
    """The counts per status the page shows (data-testid="count-<status>")."""
    return {s: int(page.get_by_test_id(f"count-{s}").inner_text().replace(",", "")) for s in (*STATUSES, "planned")}


def start_run(page: Page, *, force: bool = True) -> str:
    """Click "Start run"; the id of the run the page then shows."""
    page.get_by_test_id("force").set_checked(force)
    previous = page.evaluate("window.sluiceUI.counts()?.run_id ?? null")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_function("(previous) => (window.sluiceUI.counts()?.run_id ?? previous) !== previous", arg=previous)
    run_id: str = page.evaluate("window.sluiceUI.counts().run_id")
    return run_id


def wait_until_finished(page: Page) -> dict[str, Any]:
    """Wait until the run shown is over, every planned object is final and the page has drawn it; its counts."""
    page.wait_for_function(
        """() => {
            const c = window.sluiceUI.counts();
            return c && c.status !== "running" && c.planned > 0 && c.loaded + c.failed + c.skipped === c.planned;
        }""",
        timeout=RUN_END_MS,
    )
    # The model is final; the header and counts are drawn on the next animation frame.
    page.evaluate("window.sluiceUI.nextFrame()")
    counts: dict[str, Any] = page.evaluate("window.sluiceUI.counts()")
    return counts


def node_fill(page: Page, object_id: int) -> tuple[int, int, int]:
    """The colour drawn inside an object's node (its top-right corner, clear of text and borders)."""
    rgb: list[int] = page.evaluate(
        """(id) => {
            const box = window.sluiceUI.nodeBox(id);
            const canvas = document.querySelector("canvas.dag-nodes");
            const rect = canvas.getBoundingClientRect();
            const ratio = canvas.width / rect.width;
            const x = Math.round((box.left - rect.left + box.width - 8) * ratio);
            const y = Math.round((box.top - rect.top + 6) * ratio);
            return Array.from(canvas.getContext("2d").getImageData(x, y, 1, 1).data.slice(0, 3));
        }""",
        object_id,
    )
    return (rgb[0], rgb[1], rgb[2])


def test_page_loads_the_graph_without_console_errors(page: tuple[Page, Console], server: str) -> None:
    tab, console = page
    objects = httpx.get(f"{server}/objects").json()
    assert tab.get_by_test_id("project-name").inner_text() == objects["project"]
    for brief in objects["objects"]:
        box = tab.evaluate("(id) => window.sluiceUI.nodeBox(id)", brief["id"])
        assert box is not None and box["width"] > 0, f"object {brief['id']} is not drawn"
    assert tab.get_by_role("button", name="Start run").is_enabled()
    tab.wait_for_function("document.querySelector('[data-testid=connection]').dataset.state === 'live'")
    assert tab.get_by_test_id("connection").inner_text() == "live"
    tab.evaluate("window.sluiceUI.nextFrame()")
    assert console.errors == []


def test_a_run_started_from_the_button_ends_with_the_counts_of_the_api(page: tuple[Page, Console], server: str) -> None:
    tab, console = page
    run_id = start_run(tab)
    counts = wait_until_finished(tab)

    detail = httpx.get(f"{server}/runs/{run_id}").json()
    api_counts = {s: detail["counts"].get(s, 0) for s in STATUSES}
    shown = shown_counts(tab)
    assert shown == {**api_counts, "planned": len(detail["objects"])}
    assert {s: counts[s] for s in STATUSES} == api_counts
    assert (api_counts["failed"], api_counts["skipped"]) == (1, 2)  # 2005 failed; 3004 and 3006 skipped
    assert api_counts["loaded"] == len(detail["objects"]) - 3
    assert detail["status"] == "failed"
    # The badge follows on a later frame than the counts when the last events come in one burst: it must get there.
    expect(tab.get_by_test_id("run-status")).to_have_text("failed", timeout=10_000)
    run_row = tab.get_by_test_id("run-list").locator(f'[data-run-id="{run_id}"][data-status="failed"]')
    run_row.wait_for()
    assert "1 failed" in run_row.inner_text()

    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "ui-finished-run.png"))

    # A click on the node opens the object panel with its state in this run and its error.
    point = tab.evaluate("(id) => window.sluiceUI.nodePoint(id)", FAILING)
    tab.mouse.click(point["x"], point["y"])
    panel = tab.get_by_test_id("object-panel")
    panel.wait_for(state="visible")
    assert tab.get_by_test_id("object-title").inner_text().startswith(str(FAILING))
    assert tab.get_by_test_id("object-status").inner_text() == "failed"
    assert tab.get_by_test_id("object-attempts").inner_text() == "3"
    failed = next(o for o in detail["objects"] if o["object_id"] == FAILING)
    assert tab.get_by_test_id("object-error").inner_text() == failed["error"]
    assert str(FAILING) in failed["error"]
    tab.get_by_text("No output yet.").wait_for()  # 2005 never loaded; the panel has read /objects/2005
    # The definition's other fields (here Objets.json's NomObjet) are listed as they are written.
    metadata = tab.get_by_test_id("object-metadata")
    assert metadata.locator('dd[data-key="NomObjet"]').inner_text() == "paiements_standard"
    tab.mouse.move(1, 1)  # no tooltip in the picture
    tab.evaluate("window.sluiceUI.nextFrame()")
    tab.screenshot(path=str(ARTIFACTS / "ui-object-panel.png"))
    assert console.errors == []


def test_live_events_recolour_nodes_during_the_run(page: tuple[Page, Console], server: str) -> None:
    tab, console = page
    run_id = start_run(tab)
    # 2005's first attempt fails and waits 0.5 s before its retry: the page shows it retrying.
    tab.wait_for_function("(id) => window.sluiceUI.statusOf(id) === 'retrying'", arg=FAILING)
    tab.evaluate("window.sluiceUI.nextFrame()")
    assert node_fill(tab, FAILING) == FILLS["retrying"]
    assert tab.get_by_test_id("count-retrying").inner_text() == "1"
    assert tab.get_by_test_id("run-status").inner_text() == "running"

    # While the run is active, a second start is refused and the page says why.
    tab.get_by_role("button", name="Start run").click()
    message = tab.get_by_test_id("message")
    message.wait_for(state="visible")
    assert "active" in message.inner_text()
    assert run_id in message.inner_text()

    wait_until_finished(tab)
    assert tab.evaluate("(id) => window.sluiceUI.statusOf(id)", FAILING) == "failed"
    assert node_fill(tab, FAILING) == FILLS["failed"]
    assert node_fill(tab, 1005) == FILLS["loaded"]
    # The browser logs the refused POST itself; nothing else went wrong.
    assert [e for e in console.errors if "409 (Conflict)" not in e or "/orchestrate" not in e] == []


def test_cancel_button_cancels_the_active_run(page: tuple[Page, Console], server: str) -> None:
    tab, console = page
    run_id = start_run(tab)
    tab.wait_for_function("(id) => window.sluiceUI.statusOf(id) === 'retrying'", arg=FAILING)
    cancel = tab.get_by_role("button", name="Cancel run")
    assert cancel.is_enabled()
    cancel.click()
    wait_until_finished(tab)
    assert tab.get_by_test_id("run-status").inner_text() == "cancelled"
    # RunFinished is published just before the state store records the end: the page can see it a moment first.
    wait_for(lambda: httpx.get(f"{server}/runs/{run_id}").json()["status"] != "running", 30, "the run's record to end")
    detail = httpx.get(f"{server}/runs/{run_id}").json()
    assert detail["status"] == "cancelled"
    assert shown_counts(tab) == {**{s: detail["counts"].get(s, 0) for s in STATUSES}, "planned": len(detail["objects"])}
    assert not cancel.is_enabled()
    assert console.errors == []


# ---- the page alone (its offline harness mode: no server, files served from disk) ---------------------


def serve_static(route: Route) -> None:
    path = route.request.url.removeprefix(OFFLINE_ORIGIN).split("?")[0]
    file = STATIC / ("index.html" if path in ("", "/") else path.removeprefix("/static/"))
    if file.parent != STATIC or not file.is_file():
        route.fulfill(status=404, body="not found")
    else:
        route.fulfill(path=file)


@pytest.fixture
def offline(browser: Browser) -> Iterator[tuple[Page, Console]]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    console = Console(tab)
    tab.route(f"{OFFLINE_ORIGIN}/**", serve_static)
    tab.goto(f"{OFFLINE_ORIGIN}/?offline")
    tab.evaluate("window.sluiceUI.ready")
    yield tab, console
    context.close()


def event(kind: str, object_id: int | None = None, attempt: int = 1, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"type": kind, "v": 1, "run_id": "r1", "ts": "2025-01-02T10:00:00+00:00"}
    if object_id is not None:
        base |= {"object_id": object_id, "stage": "ingest", "attempt": attempt}
    return base | fields


def snapshot(status: str, objects: dict[int, tuple[str, int]], **fields: Any) -> dict[str, Any]:
    """A RunDetail of run r1: object id -> (status, attempt)."""
    rows = [
        {"object_id": oid, "stage": "ingest", "status": st, "attempt": att} | fields.get(str(oid), {})
        for oid, (st, att) in objects.items()
    ]
    return {"run_id": "r1", "status": status, "started_at": 1735812000.0, "objects": rows}


def test_events_and_snapshots_merge_idempotently_and_never_regress(offline: tuple[Page, Console]) -> None:
    tab, console = offline
    objects = [
        {"id": 1, "name": "a", "stage": "ingest", "parents": [], "children": [2]},
        {"id": 2, "name": "b", "stage": "ingest", "parents": [1], "children": [3]},
        {"id": 3, "name": "c", "stage": "ingest", "parents": [2], "children": []},
        {"id": 4, "name": "d", "stage": "ingest", "parents": [], "children": [5]},
        {"id": 5, "name": "e", "stage": "ingest", "parents": [4], "children": []},
    ]
    tab.evaluate("([o, s]) => window.sluiceUI.loadGraph(o, s, 'unit')", [objects, [{"name": "ingest"}]])

    def status(object_id: int) -> str | None:
        result: str | None = tab.evaluate("(id) => window.sluiceUI.statusOf(id)", object_id)
        return result

    def apply(*events: dict[str, Any]) -> None:
        tab.evaluate("(events) => window.sluiceUI.applyEvents(events)", list(events))

    apply(event("RunStarted", planned=[1, 2, 3, 4, 5], targets=[3, 5]), event("ObjectReady", 1), event("ObjectStarted", 1))
    apply(event("ObjectFailed", 1, error="timeout", retryable=True))
    assert status(1) == "retrying"
    # A snapshot older than the events does not move the object back.
    tab.evaluate("(d) => window.sluiceUI.applySnapshot(d)", snapshot("running", {1: ("ready", 1), 2: ("pending", 0)}))
    assert status(1) == "retrying"
    # The retry (a higher attempt) does; a late event of the old attempt does not.
    apply(event("ObjectReady", 1, attempt=2), event("ObjectStarted", 1, attempt=1))
    assert status(1) == "ready"
    # The same event twice counts once.
    loaded = event("ObjectLoaded", 1, attempt=2, rows=5, duration_s=0.1)
    apply(loaded, loaded)
    assert status(1) == "loaded"
    assert shown_counts(tab) == {**dict.fromkeys(STATUSES, 0), "pending": 4, "loaded": 1, "planned": 5}

    # A final state from a snapshot wins over events still on their way, and stays.
    tab.evaluate(
        "(d) => window.sluiceUI.applySnapshot(d)",
        snapshot("running", {2: ("failed", 3)}, **{"2": {"error": "boom"}}),
    )
    apply(event("ObjectReady", 2, attempt=3), event("ObjectStarted", 2, attempt=3))
    assert status(2) == "failed"
    # A descendant skipped because of a failure makes a retrying failure final.
    apply(event("ObjectReady", 4), event("ObjectFailed", 4, error="lost", retryable=True))
    assert status(4) == "retrying"
    apply(
        event("ObjectSkipped", 3, attempt=0, reason="parent 2 failed"),
        event("ObjectSkipped", 5, attempt=0, reason="parent 4 failed"),
    )
    assert (status(3), status(4)) == ("skipped", "failed")

    apply(event("RunFinished", status="failed", duration_s=1.5, counts={"loaded": 1, "failed": 2, "skipped": 2}))
    assert tab.get_by_test_id("run-status").inner_text() == "failed"
    counts = shown_counts(tab)
    assert counts == {**dict.fromkeys(STATUSES, 0), "loaded": 1, "failed": 2, "skipped": 2, "planned": 5}
    # A snapshot read before the state store recorded the end (RunFinished is published first) leaves the run ended
    # (under load the header read "running" again after a cancel: a CI run's finding).
    tab.evaluate("(d) => window.sluiceUI.applySnapshot(d)", snapshot("running", {}))
    assert tab.get_by_test_id("run-status").inner_text() == "failed"

    tab.evaluate("window.sluiceUI.select(2)")
    assert tab.get_by_test_id("object-status").inner_text() == "failed"
    assert tab.get_by_test_id("object-attempts").inner_text() == "3"
    assert tab.get_by_test_id("object-error").inner_text() == "boom"
    assert console.errors == []


# Fills of a fresh skip and of a skip after a failure (dag_view.js COLOURS).
FRESH_FILL = (0xCC, 0xFB, 0xF1)
SKIPPED_FILL = (0xF3, 0xE8, 0xFF)


def test_a_reloaded_page_shows_recent_events_fresh_objects_apart_and_the_panel_beside_the_graph(
    page: tuple[Page, Console], server: str
) -> None:
    tab, console = page
    start_run(tab, force=True)
    wait_until_finished(tab)
    run_id = start_run(tab, force=False)  # every object fresh but 2005 (failed) and its children
    wait_until_finished(tab)
    detail = httpx.get(f"{server}/runs/{run_id}").json()
    fresh = [o["object_id"] for o in detail["objects"] if o["fresh"]]
    assert 1005 in fresh and 3004 not in fresh

    tab.reload()
    tab.evaluate("window.sluiceUI.ready")
    # The feed shows what happened before the page loaded, the last run's end first.
    feed = tab.locator("#event-feed li")
    feed.first.wait_for()
    assert feed.first.get_attribute("data-type") == "RunFinished" and run_id in feed.first.inner_text()
    assert tab.get_by_test_id("count-fresh").inner_text() == str(len(fresh))
    tab.evaluate("window.sluiceUI.nextFrame()")
    assert node_fill(tab, 1005) == FRESH_FILL
    assert node_fill(tab, 3004) == SKIPPED_FILL

    # The object panel opens beside the graph: no object of the last stage is under it.
    point = tab.evaluate("(id) => window.sluiceUI.nodePoint(id)", 3006)
    tab.mouse.click(point["x"], point["y"])
    panel = tab.get_by_test_id("object-panel")
    panel.wait_for(state="visible")
    tab.evaluate("window.sluiceUI.nextFrame()")
    left = panel.bounding_box()["x"]  # type: ignore[index]
    for brief in httpx.get(f"{server}/objects").json()["objects"]:
        box = tab.evaluate("(id) => window.sluiceUI.nodeBox(id)", brief["id"])
        assert box["left"] + box["width"] < left, f"object {brief['id']} is under the panel"
    text = panel.inner_text()
    assert "null" not in text.split()
    # Captions break long paths where they must, never a word in the middle.
    assert tab.evaluate("getComputedStyle(document.querySelector('.object-panel .caption')).wordBreak") != "break-all"
    assert console.errors == []


def finished_run(server: str) -> str:
    """A run started through the API (another may be active: wait for it), once finished; its id."""
    deadline = time.monotonic() + RUN_END_MS / 1000
    while True:
        answer = httpx.post(f"{server}/orchestrate", json={"targets": None, "force": True})
        if answer.status_code != 409:
            break
        assert time.monotonic() < deadline, "a run stayed active"
        time.sleep(0.2)
    run_id: str = answer.json()["run_id"]
    while httpx.get(f"{server}/runs/{run_id}").json()["status"] == "running":
        assert time.monotonic() < deadline, f"run {run_id} did not finish"
        time.sleep(0.2)
    return run_id


def test_a_link_with_a_run_id_opens_that_run(browser: Browser, server: str) -> None:
    """An alert's link (docs/alerts.md): ``/?run=<id>`` shows that run, not the latest, and does not follow new ones."""
    older = finished_run(server)
    finished_run(server)
    context = browser.new_context(viewport={"width": 1440, "height": 860})
    try:
        tab = context.new_page()
        console = Console(tab)
        tab.goto(f"{server}/?run={older}")
        tab.evaluate("window.sluiceUI.ready")
        tab.wait_for_function(
            "(id) => window.sluiceUI.counts()?.run_id === id && window.sluiceUI.counts().planned > 0", arg=older
        )
        assert tab.locator("button[data-run-id][aria-current='true']").get_attribute("data-run-id") == older
        assert console.errors == []
    finally:
        context.close()


def test_a_server_with_a_control_token_asks_for_it_once_then_starts_runs(
    browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/api.md#authentication: the refused start asks for the token, which the tab keeps for later actions."""
    token = "ui-c0ntrol-t0ken"
    monkeypatch.setenv("SLUICE_CONTROL_TOKEN", token)  # inherited by the served process
    project = tmp_path / "seed-002"
    shutil.copytree(SEED, project, ignore=shutil.ignore_patterns(".sluice", "__pycache__"))
    with serving(project, "--simulate", "--delay-scale", "0.02") as (url, _):
        assert httpx.post(f"{url}/orchestrate", json={}).status_code == 401
        context = browser.new_context(viewport={"width": 1440, "height": 860})
        try:
            tab = context.new_page()
            asked: list[str] = []

            def answer(dialog: Any) -> None:
                asked.append(dialog.message)
                dialog.accept(token)

            tab.on("dialog", answer)
            tab.goto(url)
            tab.evaluate("window.sluiceUI.ready")
            first = start_run(tab)
            assert len(asked) == 1 and "SLUICE_CONTROL_TOKEN" in asked[0]
            wait_until_finished(tab)
            second = start_run(tab)
            assert second != first and len(asked) == 1  # not asked again
        finally:
            context.close()
