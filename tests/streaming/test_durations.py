"""Durations as text: units, combinations, numbers as seconds, and the one-line errors."""

from __future__ import annotations

import pytest

from sluice.streaming.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("0s", 0),
        ("500ms", 500_000),
        ("10s", 10_000_000),
        ("1.5s", 1_500_000),
        ("1m", 60_000_000),
        ("1h30m", 5_400_000_000),
        ("2 minutes", 120_000_000),
        ("10 seconds", 10_000_000),
        ("1d", 86_400_000_000),
        ("250us", 250),
        (" 1M ", 60_000_000),
        (3, 3_000_000),
        (0.25, 250_000),
    ],
)
def test_parses_units_and_combinations(text: str | int | float, micros: int) -> None:
    assert parse_duration(text) == micros


@pytest.mark.parametrize("text", ["", "10", "10x", "s", "1m 30", "-5s", "1.5.2s", "ten seconds", "5s!"])
def test_rejects_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a duration: write a number and a unit, e\.g\. 500ms"):
        parse_duration(text)


def test_rejects_negative_numbers_fractions_of_a_microsecond_and_booleans() -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_duration(-1)
    with pytest.raises(ValueError, match="whole number of microseconds"):
        parse_duration("0.5us")
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(True)


@pytest.mark.parametrize("micros", [0, 1, 1_000, 90_000_000, 86_400_000_000 + 3_600_000_001])
def test_format_reads_back(micros: int) -> None:
    assert parse_duration(format_duration(micros)) == micros
