"""The ``history:`` section: durations that bound what a prune removes need a unit, each mistake at its key's line."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.project.load import parse_project
from sluice.runtime.history_settings import HistorySettings

OBJECTS = "objects:\n  - {id: 1001, name: a, source: {type: csv, path: a.csv}}\n"


def problems(tmp_path: Path, history: str) -> list[str]:
    path = tmp_path / "sluice.yaml"
    path.write_text(OBJECTS + "history:\n" + history, encoding="utf-8")
    _, found = parse_project(path)
    return [str(p).replace(str(tmp_path) + "/", "") for p in found]


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        ("  keep: 30d\n  dated_outputs: 7\n", "sluice.yaml:5: history: dated_outputs: 7 has no unit (a bare number would be "
         "seconds): give a unit, e.g. 7d"),
        ("  keep: 7\n", "sluice.yaml:4: history: keep: 7 has no unit (a bare number would be seconds): give a unit, e.g. 30d"),
        ("  keep: 30d\n  dated_outputs: 0s\n", "sluice.yaml:5: history: dated_outputs: '0s' must be above 0, e.g. 7d"),
    ],
)  # fmt: skip
def test_a_duration_without_a_unit_or_of_zero_is_refused_at_its_line(tmp_path: Path, history: str, expected: str) -> None:
    assert problems(tmp_path, history) == [expected]


def test_durations_with_units_are_read_in_seconds_and_every_may_be_bare_seconds(tmp_path: Path) -> None:
    settings = HistorySettings(keep="30d", dated_outputs="2d", every=60)
    assert (settings.keep_s, settings.dated_outputs_s, settings.every_s) == (30 * 86400, 2 * 86400, 60)
    assert problems(tmp_path, "  keep: 12h\n  every: 600\n") == []
