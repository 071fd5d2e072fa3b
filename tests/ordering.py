"""Longest test files first: the suite's parallel part (``scripts/test``: pytest-xdist, ``--dist loadfile``) hands
files to its workers in collection order, so a long file collected last (``tests/transforms/``, Spark and dbt) ran
while the other worker had nothing left: minutes of the suite with one worker idle. Ordering the files by their
measured seconds, longest first, is the longest-processing-time rule (Graham, 1969), which bounds the idle tail by
the shortest files.

Seconds per file come from ``tests/file_durations.json``; a file it does not list (a new one) goes after the listed
ones, in collection order. To measure them again, delete the file and run the suite with
``SLUICE_RECORD_DURATIONS=1`` (``make test``): each pytest session adds the seconds (setup, call and teardown) of
the tests it ran, per file, to it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

DURATIONS = Path(__file__).with_name("file_durations.json")
_ran: dict[str, float] = {}


def _seconds() -> dict[str, float]:
    try:
        loaded = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Sort ``items`` by their file's seconds, longest first (a stable sort: a file's tests keep their order)."""
    seconds = _seconds()
    if seconds:
        items.sort(key=lambda item: -seconds.get(item.nodeid.split("::", 1)[0], 0.0))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if os.environ.get("SLUICE_RECORD_DURATIONS") == "1":
        path = report.nodeid.split("::", 1)[0]
        _ran[path] = _ran.get(path, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    """With ``SLUICE_RECORD_DURATIONS=1``, add this session's seconds per file to the file (the xdist controller
    gets every worker's reports; a worker itself writes nothing)."""
    if not _ran or hasattr(session.config, "workerinput"):
        return
    seconds = _seconds()
    for path, spent in _ran.items():
        seconds[path] = round(seconds.get(path, 0.0) + spent, 1)
    DURATIONS.write_text(json.dumps(dict(sorted(seconds.items(), key=lambda kv: -kv[1])), indent=0) + "\n")
