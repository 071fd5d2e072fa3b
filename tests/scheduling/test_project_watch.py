"""The project's files as the scheduler watches them while a schedule is set apart."""

from __future__ import annotations

import os
from pathlib import Path

from tests.helpers import rewrite_keeping_size_and_mtime, write_yaml

from sluice.scheduling.project_watch import ProjectWatch


def test_an_edit_a_touch_a_rewrite_keeping_size_and_mtime_and_a_removal_are_changes(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "name: shop\nschedules: {a: {cron: '0 0 30 2 *'}}\n")
    watch = ProjectWatch([path])
    assert not watch.changed()
    rewrite_keeping_size_and_mtime(path, "30 2", "28 2")
    assert watch.changed() and not watch.changed()  # said once
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # touch: ask for another look
    assert watch.changed()
    other = tmp_path / "Objets.json"
    watch.watch(other)  # missing: a signature too
    assert not watch.changed()
    other.write_text("[]", encoding="utf-8")
    assert watch.changed()
    path.unlink()
    assert watch.changed() and not watch.changed()
