"""The window: options: durations, sliding vs tumbling, column names and aggregate SQL, each a one-line error."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.plugins.options import convert_options
from sluice.streaming.window_options import WindowOptions

BASE: dict[str, Any] = {"type": "tumbling", "size": "1m", "time_column": "ts", "aggregates": {"n": "count(*)"}}


def problems(**changes: Any) -> list[str]:
    raw = {**BASE, **changes}
    value, found = convert_options(
        WindowOptions, {k: v for k, v in raw.items() if v is not None}, label="object 4001: window", file="sluice.yaml", line=7
    )
    assert (value is None) == bool(found)
    return [str(problem) for problem in found]


def test_valid_options_and_their_durations_in_microseconds() -> None:
    assert problems() == []
    value, _ = convert_options(
        WindowOptions, {**BASE, "type": "sliding", "slide": 15, "watermark": "1m30s"}, label="w", file=None
    )
    assert value is not None and (value.size_us, value.slide_us, value.watermark_us) == (60_000_000, 15_000_000, 90_000_000)
    assert value.late == "drop" and value.group_by == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"size": "1x"},
            "sluice.yaml:7: object 4001: window: size: '1x' is not a duration: write a number and a unit, e.g. 500ms",
        ),
        ({"size": "0s"}, "size: '0s' is empty: give a window length above 0"),
        ({"watermark": "soon"}, "watermark: 'soon' is not a duration"),
        ({"slide": "30s"}, "slide: '30s' is for sliding windows only: remove it, or write type: sliding"),
        ({"type": "sliding"}, "slide: sliding windows need a slide (how often a window starts), e.g. slide: 30s"),
        ({"type": "sliding", "slide": "2m"}, "slide: '2m' must be above 0 and at most size ('1m')"),
        ({"type": "hopping"}, "Choose one of: tumbling, sliding"),
        ({"late": "keep"}, "Choose one of: drop, side_output"),
        ({"group_by": ["u", "u"]}, "group_by: 'u' is listed twice"),
        ({"group_by": ["window_start"]}, "clashes with window_start/window_end"),
        (
            {"group_by": ["u"], "aggregates": {"U": "count(*)"}},
            "aggregates: output column 'U' is already a group_by column: rename the aggregate",
        ),
        ({"aggregates": {"n": "sum("}}, "aggregates: n: 'sum(' is not a SQL expression"),
        ({"aggregates": {"n": "count(*); drop table t"}}, "is a statement: write one aggregate expression"),
        ({"aggregates": {"n": "(select 1)"}}, "is a statement"),
        ({"aggregates": {}}, "aggregates"),
        ({"time_column": "__sluice_event_us"}, "reserved by Sluice"),
    ],
)
def test_each_mistake_is_one_line_naming_the_option_and_value(changes: dict[str, Any], message: str) -> None:
    found = problems(**changes)
    assert len(found) == 1 and message in found[0] and "\n" not in found[0], found


def test_needed_columns_follow_the_aggregates() -> None:
    value, _ = convert_options(
        WindowOptions,
        {**BASE, "group_by": ["Country"], "aggregates": {"n": "count(*)", "t": "sum(Amount) + max(x)"}},
        label="w",
        file=None,
    )
    assert value is not None and value.needed_columns() == {"ts", "country", "amount", "x"}
    every, _ = convert_options(WindowOptions, {**BASE, "aggregates": {"l": "list(columns(*))"}}, label="w", file=None)
    assert every is not None and every.needed_columns() is None
