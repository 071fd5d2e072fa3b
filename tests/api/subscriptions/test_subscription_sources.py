"""Which sync topics feed a served table (sluice.api.subscriptions.sources), and a feed waiting for the sync's
apply before it tells that a table changed (sluice.api.subscriptions.feeds)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from subscription_clients import metric

from helpers import wait_for
from sluice.api.subscriptions.feeds import TopicFeed
from sluice.api.subscriptions.sources import Feed, SyncSource, feeds_for
from sluice.bus.embedded import EmbeddedBus
from sluice.cdc.config import SyncSettings
from sluice.cdc.status import SyncStatus, TableStatus, status_dir

URLS = {
    "hr": "mysql://u:p@127.0.0.1:3306/hrdb",
    "hr_all": "mysql://u:p@127.0.0.1:3306/",
    "warehouse": "postgresql://postgres@127.0.0.1:5432/dw",
}


def sync(**raw: Any) -> SyncSource:
    settings = msgspec.convert(
        {"name": "emp", "source": "hr", "target": "warehouse", "tables": ["employes"], **raw}, SyncSettings
    )
    return SyncSource(settings, URLS)


def test_a_source_table_is_fed_by_its_own_capture_topic() -> None:
    assert feeds_for([sync()], "hr", URLS["hr"], "hrdb", "employes") == [Feed("emp", "sluice.cdc.emp.hr.hrdb.employes")]
    assert feeds_for([sync()], "hr", URLS["hr"], "hrdb", "dept") == []  # not in tables:
    assert feeds_for([sync()], "hr", URLS["hr"], "otherdb", "employes") == []  # capture lists the URL's database only


def test_a_target_table_waits_for_the_apply_group() -> None:
    applied = Feed("emp", "sluice.cdc.emp.hr.hrdb.employes", "sluice-sync.emp.hr")
    assert feeds_for([sync()], "warehouse", URLS["warehouse"], "public", "employes") == [applied]
    assert feeds_for([sync(target_namespace="rh")], "warehouse", URLS["warehouse"], "rh", "employes") == [applied]
    assert feeds_for([sync(target_namespace="rh")], "warehouse", URLS["warehouse"], "public", "employes") == []
    renamed = sync(rename={"employes": "staff"})
    assert feeds_for([renamed], "warehouse", URLS["warehouse"], "public", "staff") == [applied]
    assert feeds_for([renamed], "warehouse", URLS["warehouse"], "public", "employes") == []


def test_another_connection_name_with_the_same_url_is_the_same_database() -> None:
    found = feeds_for([sync()], "dw_reader", URLS["warehouse"] + "/", "public", "employes")
    assert [f.topic for f in found] == ["sluice.cdc.emp.hr.hrdb.employes"]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:5432/dw?options=-csearch_path%3Drh",  # the examples' API connection
        "postgres://reader:secret@127.0.0.1:5432/dw?sslmode=disable",
    ],
)
def test_another_search_path_user_or_query_is_the_same_database(url: str) -> None:
    found = feeds_for([sync(target_namespace="rh")], "dw_api", url, "rh", "employes")
    assert [f.topic for f in found] == ["sluice.cdc.emp.hr.hrdb.employes"]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:5432/other",
        "postgresql://postgres@127.0.0.1:5433/dw",
        "postgresql://postgres@10.0.0.1:5432/dw",
    ],
)
def test_another_database_port_or_host_is_not(url: str) -> None:
    assert feeds_for([sync()], "dw_api", url, "public", "employes") == []


def test_source_namespaces_come_from_tables_entries_or_the_status_file(tmp_path: Path) -> None:
    dotted = sync(source="hr_all", tables=["payroll.employes"])
    assert [f.topic for f in feeds_for([dotted], "warehouse", URLS["warehouse"], "public", "employes")] == [
        "sluice.cdc.emp.hr_all.payroll.employes"
    ]
    globbed = sync(source="hr_all", tables=["emp*"])  # the namespace is nowhere in the configuration
    assert feeds_for([globbed], "warehouse", URLS["warehouse"], "public", "employes", tmp_path) == []
    folder = status_dir(tmp_path)
    folder.mkdir(parents=True)
    status = SyncStatus(
        name="emp",
        source="hr_all",
        target="warehouse",
        direction="one-way",
        tables=[TableStatus("paie.employes", "public.employes", "hr_all -> warehouse")],
    )
    (folder / "emp.json").write_bytes(msgspec.json.encode(status))
    assert [f.topic for f in feeds_for([globbed], "warehouse", URLS["warehouse"], "public", "employes", tmp_path)] == [
        "sluice.cdc.emp.hr_all.paie.employes"
    ]


def test_both_ways_a_table_has_both_topics() -> None:
    both = sync(direction="both")
    assert feeds_for([both], "warehouse", URLS["warehouse"], "public", "employes") == [
        Feed("emp", "sluice.cdc.emp.hr.hrdb.employes", "sluice-sync.emp.hr"),
        Feed("emp", "sluice.cdc.emp.warehouse.public.employes"),
    ]
    assert feeds_for([both], "hr", URLS["hr"], "hrdb", "employes") == [
        Feed("emp", "sluice.cdc.emp.hr.hrdb.employes"),
        Feed("emp", "sluice.cdc.emp.warehouse.public.employes", "sluice-sync.emp.warehouse"),
    ]


def test_a_feed_tells_of_a_change_only_once_the_apply_group_committed_it(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus.db")
    topic = "sluice.cdc.emp.hr.hrdb.employes"
    told: list[int | None] = []
    done = threading.Event()

    def notify(name: str) -> None:
        told.append(bus.committed("apply", name))
        done.set()

    apply = bus.consumer("apply", topic, exclusive=True)
    feed = TopicFeed(bus, Feed("emp", topic, "apply"), "live-test", notify)
    feed.start()
    try:
        read = metric("sluice_api_subscription_change_messages_total", topic=topic)
        offset = bus.publish(topic, [("[1]", b"change")])[0]
        wait_for(lambda: metric("sluice_api_subscription_change_messages_total", topic=topic) > read, 20, "the feed to read")
        time.sleep(0.3)  # longer than the window: a feed not waiting for apply would have told already
        apply.commit(apply.poll(10, timeout_s=5))
        assert done.wait(20)
        assert told == [offset + 1]
    finally:
        feed.close()
        apply.close()
        bus.close()


@pytest.mark.kafka
def test_a_feed_on_kafka_notices_changes_published_after_it_started(kafka_ns_url: str) -> None:
    from sluice.bus.registry import open_bus

    bus = open_bus(kafka_ns_url)
    topic = "sluice.cdc.emp.hr.hrdb.employes"
    published = threading.Event()
    told: list[bool] = []
    done = threading.Event()

    def notify(name: str) -> None:
        told.append(published.is_set())
        done.set()

    try:
        bus.publish(topic, [("[0]", b"before the feed")])
        feed = TopicFeed(bus, Feed("emp", topic), "live-kafka", notify)
        feed.start()
        try:
            published.set()
            bus.publish(topic, [("[1]", b"change")])
            assert done.wait(30)
            assert told[0], "told of the message published before the feed started"
        finally:
            feed.close()
    finally:
        bus.close()
