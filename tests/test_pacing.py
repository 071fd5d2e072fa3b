"""The waiting token bucket: tokens taken one or many at a time, on an injected clock."""

from __future__ import annotations

import doctest

import pytest

from sluice import pacing
from sluice.pacing import FakeClock, TokenBucket


def test_the_module_examples_hold() -> None:
    result = doctest.testmod(pacing)
    assert result.attempted > 0 and result.failed == 0


def test_taking_many_tokens_at_once_waits_as_long_as_taking_them_one_by_one() -> None:
    one, many = FakeClock(), FakeClock()
    single = TokenBucket(50.0, burst=5, clock=one.now, sleep=one.sleep)
    chunked = TokenBucket(50.0, burst=5, clock=many.now, sleep=many.sleep)
    for _ in range(200):
        single.acquire()
    for _ in range(20):
        chunked.acquire(10)
    assert one.t == pytest.approx(many.t) == pytest.approx((200 - 5) / 50)
