"""``sluice serve --stream``: a hosted streaming object at ``GET /streams`` and in the web UI's Streams panel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from live_server import LiveServer
from playwright.sync_api import Browser, expect
from test_ui_browser import Console, browser, serving  # noqa: F401

from helpers import wait_for
from sluice.errors import ConfigError
from sluice.project.load import load_project
from sluice.server.services import ServerSettings
from sluice.server.streams import stream_ids
from streaming.streams import MakeTopic, produce, topics, write_project  # noqa: F401


def test_a_hosted_stream_reports_rate_lag_and_its_last_batch(tmp_path: Path, kafka_url: str, topics: MakeTopic) -> None:  # noqa: F811
    topic = topics(2)
    produce(kafka_url, topic, range(2000), partitions=2)
    project = load_project(write_project(tmp_path / "p", kafka_url, topic))
    with LiveServer(project, ServerSettings(streams=("all",))) as server, server.client() as client:

        def committed() -> bool:
            entry = client.get("/streams").json()["streams"][0]
            return entry["records"] == 2000 and len(entry["lag"]) == 2 and entry["lag_total"] == 0

        wait_for(committed, 60, "the stream to commit 2000 records")
        entry = client.get("/streams").json()["streams"][0]
        assert (entry["id"], entry["name"], entry["state"]) == (1001, "events", "running")
        assert entry["last_batch"]["rows"] > 0 and entry["dead_letters"] == 0
        # nothing left to read: the rate drops to 0 rather than decaying over the last batches' window
        wait_for(lambda: client.get("/streams").json()["streams"][0]["records_per_s"] == 0, 30, "the idle stream's rate to be 0")
        assert sorted((p["topic"], p["partition"], p["records"]) for p in entry["lag"]) == [(topic, 0, 0), (topic, 1, 0)]
        metrics = client.get("/metrics").text
        assert 'sluice_stream_records_total{object="events"}' in metrics
    assert server.services.streams is None  # stopped with the server
    # Not hosted: the lake's last commit is shown.
    with LiveServer(project) as server, server.client() as client:
        entry = client.get("/streams").json()["streams"][0]
        assert entry["state"] == "elsewhere" and entry["last_batch"]["records"] > 0


def test_stream_ids_name_streaming_objects_only(tmp_path: Path) -> None:
    project = load_project(write_project(tmp_path / "p", "kafka://127.0.0.1:1", "t"))
    assert stream_ids(project, ["all"]) == [1001] and stream_ids(project, ["1001"]) == [1001] and stream_ids(project, []) == []
    with pytest.raises(ConfigError, match=r"--stream '7' is not a streaming object of the project \(streaming objects: 1001"):
        stream_ids(project, ["7"])


@pytest.fixture
def stream_server(tmp_path: Path, kafka_url: str, topics: MakeTopic) -> Iterator[str]:  # noqa: F811
    topic = topics()
    produce(kafka_url, topic, range(500), malformed=[b"{bad"])
    path = write_project(tmp_path / "p", kafka_url, topic)
    with serving(path, "--stream", "all") as (url, process):
        yield url
        process.terminate()
        assert process.wait(timeout=30) == 0  # the hosted stream committed and stopped with the server


def test_the_streams_panel_shows_each_streaming_object(browser: Browser, stream_server: str) -> None:  # noqa: F811
    context = browser.new_context(viewport={"width": 1440, "height": 860})
    page = context.new_page()
    console = Console(page)
    try:
        page.goto(stream_server)
        row = page.get_by_test_id("stream")
        expect(row).to_have_count(1)
        expect(page.get_by_test_id("streams")).to_be_visible()
        cells = row.locator("td")
        expect(cells.nth(0)).to_have_text("1001 events")
        expect(cells.nth(1)).to_have_text("running")
        expect(cells.nth(6)).to_have_text("1", timeout=15_000)  # the malformed record, dead-lettered
        expect(cells.nth(5)).to_contain_text("rows")
        assert console.errors == []
    finally:
        context.close()
