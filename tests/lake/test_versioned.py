"""Manifest-committed datasets (sluice.lake.versioned): what happens after the commit, off the write's path."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pytest

from sluice.lake.local import LocalLake
from sluice.lake.versioned import Retention, VersionedStore

TABLE = pa.table({"id": pa.array(range(6), pa.int64()), "part": pa.array([0, 1] * 3, pa.int64())})


def write(lake: LocalLake) -> str:
    return lake.write("raw", "events", TABLE.to_reader(), partition_by=["part"]).location


def test_pruning_runs_after_the_write_returns_and_flush_waits_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    pruned: list[set[str]] = []
    prune = VersionedStore._prune

    def held(self: VersionedStore, folder: str, committed: set[str], dropped: Sequence[str]) -> None:
        assert release.wait(60)
        prune(self, folder, committed, dropped)
        pruned.append(committed)

    monkeypatch.setattr(VersionedStore, "_prune", held)
    lake = LocalLake(tmp_path / "lake", Retention(keep_versions=1))
    release.set()
    location = write(lake)
    release.clear()
    write(lake)  # returns while its pruning waits
    assert len(pruned) == 1
    release.set()
    lake.flush()
    assert len(pruned) == 2
    assert len(lake.versions(location)) == 1


def test_a_write_waits_for_the_pruning_its_dataset_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The orphan pass of a pruning must not meet the next write's version half-written (grace 0 here)."""
    order: list[str] = []
    release = threading.Event()
    prune = VersionedStore._prune

    def held(self: VersionedStore, folder: str, committed: set[str], dropped: Sequence[str]) -> None:
        order.append("pruning")
        assert release.wait(60)
        prune(self, folder, committed, dropped)
        order.append("pruned")

    monkeypatch.setattr(VersionedStore, "_prune", held)
    lake = LocalLake(tmp_path / "lake", Retention(keep_versions=1, orphan_grace_s=0.0))
    location = write(lake)
    second = threading.Thread(target=lambda: order.append(f"wrote {write(lake)}"))
    second.start()
    second.join(0.2)
    order.append("released")
    release.set()
    second.join(60)
    lake.flush()
    assert order[:3] == ["pruning", "released", "pruned"] and f"wrote {location}" in order[3:]
    assert len(lake.versions(location)) == 1 and lake.read(location).read_all().num_rows == 6


def test_a_failed_pruning_is_logged_and_the_next_write_prunes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    lake = LocalLake(tmp_path / "lake", Retention(keep_versions=1, orphan_grace_s=0.0))
    location = write(lake)
    listing = VersionedStore._version_folders

    def refuse(self: VersionedStore, folder: str) -> list[str]:
        raise OSError("the store refused the listing")

    monkeypatch.setattr(VersionedStore, "_version_folders", refuse)
    with caplog.at_level(logging.WARNING, logger="sluice.lake"):
        write(lake)  # committed; its pruning fails in the background
        lake.flush()
    assert "pruning old versions" in caplog.text and "refused the listing" in caplog.text
    monkeypatch.setattr(VersionedStore, "_version_folders", listing)
    assert len(lake.versions(location)) == 2  # the dropped version is still there
    write(lake)  # the left-over version is no longer in the manifest: abandoned, deleted past the grace period
    lake.flush()
    assert len(lake.versions(location)) == 1


def test_pruning_outlives_a_daemon_writer_so_the_process_waits_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes come from the stage workers' executor threads, daemons: their pruning must still hold the process."""
    daemons: list[bool] = []
    prune = VersionedStore._prune

    def watched(self: VersionedStore, folder: str, committed: set[str], dropped: Sequence[str]) -> None:
        daemons.append(threading.current_thread().daemon)
        prune(self, folder, committed, dropped)

    monkeypatch.setattr(VersionedStore, "_prune", watched)
    lake = LocalLake(tmp_path / "lake", Retention(keep_versions=1))
    writer = threading.Thread(target=lambda: [write(lake), write(lake)], daemon=True)
    writer.start()
    writer.join(60)
    lake.flush()
    assert daemons == [False, False]
