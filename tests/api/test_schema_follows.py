"""The schema follows the database: a column or table added, dropped or renamed shows up in the next
request without a restart, and no request fails because of a stale schema."""

from __future__ import annotations

from api_support import Client, execute_all

from sluice.api import service


def test_added_column_and_table_are_served_at_once(client: Client) -> None:
    version = client.api.state().version
    execute_all(
        client.url,
        ["ALTER TABLE employes ADD COLUMN note VARCHAR(20)", "CREATE TABLE projets (id INTEGER PRIMARY KEY, titre VARCHAR(20))"],
    )
    execute_all(client.url, ["UPDATE employes SET note = 'x' WHERE id = 1", "INSERT INTO projets VALUES (1, 'P')"])
    data = client.data("{ employes_by_pk(id: 1) { note } projets { titre } }")
    assert data == {"employes_by_pk": {"note": "x"}, "projets": [{"titre": "P"}]}
    assert client.api.state().version == version + 1


def test_dropped_and_renamed_columns_are_answered_from_the_new_schema(client: Client) -> None:
    assert client.data("{ employes_by_pk(id: 1) { author } }") == {"employes_by_pk": {"author": "u1"}}
    rename = "ALTER TABLE employes RENAME COLUMN author TO owner"
    execute_all(client.url, [rename])
    status, body = client.run("{ employes_by_pk(id: 1) { author } }")  # cached as valid; the database says no
    assert status == 400 and body["errors"][0]["extensions"]["code"] == "validation-failed"
    assert client.data("{ employes_by_pk(id: 1) { owner } }") == {"employes_by_pk": {"owner": "u1"}}


def test_a_check_rebuilds_only_when_the_catalog_changed(client: Client) -> None:
    before = client.api.state()
    execute_all(client.url, ["CREATE TABLE later (id INTEGER PRIMARY KEY)"])
    state = client.api.refresh(force=True)
    assert state.version == before.version + 1
    assert "later" in state.model.tables
    unchanged = client.api.refresh(force=True)
    assert unchanged.version == state.version  # same fingerprint: no rebuild


def test_the_watcher_thread_follows_without_requests(client: Client, monkeypatch: object) -> None:
    import time

    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(service, "CHECK_INTERVAL_S", 0.05)
    before = client.api.state().version
    client.api.start(watch=True)
    execute_all(client.url, ["CREATE TABLE later (id INTEGER PRIMARY KEY)"])
    deadline = time.monotonic() + 20
    while client.api.state().version == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "later" in client.api.state().model.tables
