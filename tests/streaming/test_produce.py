"""Pacing of the producer: a token bucket on an injected clock (no timing assertion), rates as written."""

from __future__ import annotations

import doctest

import pytest

from sluice.pacing import FakeClock
from sluice.streaming import produce
from sluice.streaming.produce import chunk_size, make_pacer, parse_rate


def test_the_module_examples_hold() -> None:
    result = doctest.testmod(produce)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("rate", [1.0, 100.0, 1000.0, 250_000.0])
def test_a_token_bucket_holds_the_rate_over_many_chunks(rate: float) -> None:
    clock = FakeClock()
    bucket = make_pacer(rate)
    bucket.clock, bucket.sleep, bucket.at = clock.now, clock.sleep, 0.0
    step, records = chunk_size(rate), 0
    while records < 20 * rate:
        bucket.acquire(step)
        records += step
    assert clock.t == pytest.approx((records - bucket.burst) / rate, rel=0.01)


def test_a_producer_that_fell_behind_catches_up_by_one_burst_at_most() -> None:
    clock = FakeClock()
    bucket = make_pacer(100.0)
    bucket.clock, bucket.sleep, bucket.at = clock.now, clock.sleep, 0.0
    clock.t += 60.0  # a slow broker: a minute without sending
    bucket.acquire(10)  # the burst (a tenth of a second) is free
    start = clock.t
    bucket.acquire(100)
    assert clock.t - start == pytest.approx(1.0)


@pytest.mark.parametrize(("text", "rate"), [("1000/s", 1000.0), ("250", 250.0), ("0", 0.0), (" 2.5 / s ", 2.5)])
def test_rates_as_written(text: str, rate: float) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "1000/min", "-5", ""])
def test_rates_that_are_not_records_per_second_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="records per second"):
        parse_rate(text)


def test_chunks_are_about_a_fiftieth_of_a_second() -> None:
    assert [chunk_size(r) for r in (0, 1, 1000, 10_000_000)] == [10_000, 1, 20, 10_000]
