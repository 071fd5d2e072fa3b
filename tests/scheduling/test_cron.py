"""Cron ticks in a time zone across daylight-saving changes (Europe/Paris: 2026-03-29 and 2026-10-25)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sluice.errors import ConfigError
from sluice.scheduling.cron import Cron, check_cron, check_timezone


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def texts(ticks: list[datetime]) -> list[str]:
    return [t.isoformat() for t in ticks]


def test_a_daily_tick_in_the_skipped_hour_fires_once_moved_past_the_gap() -> None:
    cron = Cron("30 2 * * *", "Europe/Paris")
    ticks = cron.between(utc(2026, 3, 27), utc(2026, 3, 31))
    # 02:30 CET is 01:30 UTC; on the 29th 02:30 does not exist: it fires at 03:30 CEST (01:30 UTC); then 02:30 CEST
    assert texts(ticks) == [
        "2026-03-27T01:30:00+00:00",
        "2026-03-28T01:30:00+00:00",
        "2026-03-29T01:30:00+00:00",
        "2026-03-30T00:30:00+00:00",
    ]


def test_a_daily_tick_in_the_repeated_hour_fires_once_at_its_first_occurrence() -> None:
    cron = Cron("30 2 * * *", "Europe/Paris")
    ticks = cron.between(utc(2026, 10, 23), utc(2026, 10, 27))
    # 02:30 happens twice on the 25th (CEST then CET): only the first, 00:30 UTC
    assert texts(ticks) == [
        "2026-10-23T00:30:00+00:00",
        "2026-10-24T00:30:00+00:00",
        "2026-10-25T00:30:00+00:00",
        "2026-10-26T01:30:00+00:00",
    ]


def test_an_hourly_schedule_across_both_changes_never_fires_twice_at_one_instant() -> None:
    cron = Cron("0 * * * *", "Europe/Paris")
    spring = cron.between(utc(2026, 3, 28, 23), utc(2026, 3, 29, 3))
    # wall 02:00 does not exist and lands on 03:00 CEST, the same instant as wall 03:00: once
    assert texts(spring) == [
        "2026-03-29T00:00:00+00:00",
        "2026-03-29T01:00:00+00:00",
        "2026-03-29T02:00:00+00:00",
        "2026-03-29T03:00:00+00:00",
    ]
    autumn = cron.between(utc(2026, 10, 24, 22), utc(2026, 10, 25, 3))
    # the second pass of 02:00-03:00 (01:00 UTC) fires nothing
    assert texts(autumn) == [
        "2026-10-24T23:00:00+00:00",
        "2026-10-25T00:00:00+00:00",
        "2026-10-25T02:00:00+00:00",
        "2026-10-25T03:00:00+00:00",
    ]
    assert len(set(spring)) == len(spring) and len(set(autumn)) == len(autumn)


def test_next_after_from_inside_the_repeated_hour_and_previous() -> None:
    cron = Cron("45 2 * * *", "Europe/Paris")
    second_pass = utc(2026, 10, 25, 1, 30)  # 02:30 CET, after 02:45 CEST (00:45 UTC) fired
    assert cron.next_after(second_pass).isoformat() == "2026-10-26T01:45:00+00:00"
    assert cron.previous(second_pass).isoformat() == "2026-10-25T00:45:00+00:00"
    assert cron.previous(utc(2026, 10, 25, 0, 45)).isoformat() == "2026-10-24T00:45:00+00:00"


def test_upcoming_and_utc_default() -> None:
    assert texts(Cron("*/20 * * * *").upcoming(utc(2026, 1, 1, 0, 0), 3)) == [
        "2026-01-01T00:20:00+00:00",
        "2026-01-01T00:40:00+00:00",
        "2026-01-01T01:00:00+00:00",
    ]


def test_bad_expressions_and_zones_are_refused() -> None:
    assert check_cron("0 2 * * *") is None
    assert "five fields" in (check_cron("0 2 * *") or "")
    assert "not a cron expression" in (check_cron("0 25 * * *") or "")
    assert "six fields" in (check_cron("0 0 * * * *") or "")  # croniter would fire it every second
    assert check_timezone("Europe/Paris") is None
    assert "unknown time zone 'Mars/Olympus'" in (check_timezone("Mars/Olympus") or "")
    with pytest.raises(ConfigError, match="IANA"):
        Cron("0 2 * * *", "Mars/Olympus")
