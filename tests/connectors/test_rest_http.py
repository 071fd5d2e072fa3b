"""The REST source's HTTP layer: Retry-After, backoff with jitter, the token bucket, waits actually taken."""

from __future__ import annotations

import email.utils
from collections.abc import Iterator

import pytest
from tests.connectors.rest_server import FakeApi

from sluice.connectors.rest_http import MAX_REDIRECTS, Credentials, HttpClient, TokenBucket, backoff_s, retry_after_s
from sluice.connectors.rest_options import Retries
from sluice.errors import TerminalError


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi([{"id": i} for i in range(1, 4)])
    yield server
    server.close()


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert retry_after_s("7", now=100.0) == 7.0
    assert retry_after_s(email.utils.formatdate(160.0, usegmt=True), now=100.0) == 60.0
    assert retry_after_s(email.utils.formatdate(50.0, usegmt=True), now=100.0) == 0.0
    assert retry_after_s(None, now=0.0) is None
    assert retry_after_s("-3", now=0.0) is None


def test_backoff_doubles_up_to_the_ceiling_with_full_jitter() -> None:
    retries = Retries(backoff_s=0.5, max_backoff_s=3.0)
    assert [backoff_s(n, retries, rand=lambda: 1.0) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_s(3, retries, rand=lambda: 0.25) == 0.5


def test_token_bucket_paces_requests_after_the_burst() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(6):
        bucket.acquire()
    assert waits == [0.25, 0.25]  # a burst of 4, then one every 1/4 s
    now[0] += 10.0
    waits.clear()
    for _ in range(4):
        bucket.acquire()
    assert waits == []  # idle time refills up to the burst, no more
    bucket.acquire()
    assert waits == [0.25]
    with pytest.raises(ValueError, match="rate must be > 0"):
        TokenBucket(0)


def client(sleeps: list[float], **retries: float) -> HttpClient:
    return HttpClient(
        "object 7 (x)",
        Credentials(),
        Retries(**retries),
        5.0,
        {},
        rate_limit=1000.0,
        sleep=sleeps.append,
        rand=lambda: 0.5,
        base_url="http://127.0.0.1",
    )


def test_the_client_waits_retry_after_when_given_and_backs_off_otherwise(api: FakeApi) -> None:
    api.faults["/link"] = [(429, {"Retry-After": "2"}), (503, {}), (502, {})]
    sleeps: list[float] = []
    http = client(sleeps, backoff_s=1.0, max_backoff_s=30.0)
    try:
        response = http.get(f"{api.url}/link", {"page": 1})
    finally:
        http.close()
    assert response.status_code == 200
    # Retry-After's 2 s, then half (rand 0.5) of the 2 s and 4 s ceilings of retries 2 and 3
    assert sleeps == [2.0, 1.0, 2.0]


def test_redirects_are_followed_up_to_a_limit(api: FakeApi) -> None:
    api.faults["/link"] = [(302, {"Location": "/link?page=1"}), (307, {"Location": f"{api.url}/link"})]
    http = client([])
    try:
        assert http.get(f"{api.url}/link", {}).json() == [{"id": 1}, {"id": 2}, {"id": 3}]
        api.faults["/link"] = [(302, {"Location": "/link"})] * (MAX_REDIRECTS + 1)
        with pytest.raises(
            TerminalError, match=rf"^object 7 \(x\): GET http://127.0.0.1:\d+/link: more than {MAX_REDIRECTS} redirects"
        ):
            http.get(f"{api.url}/link", {})
    finally:
        http.close()
