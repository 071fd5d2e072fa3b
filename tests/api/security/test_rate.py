"""Rate limits: 429 with Retry-After and the RateLimit-* fields (draft-06), in memory and shared through Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import wait_for
from sluice.api.gate import DataApiError
from sluice.api.security import build_gate
from sluice.api.security.gate import SecurityGate
from sluice.api.security.keys import open_key_store
from sluice.errors import ConfigError

from .conftest import bearer, free_socket, token
from .support import api_settings

TINY_APP = Path(__file__).with_name("tiny_app.py")


def limited_gate(project_dir: Path, **rate: str) -> SecurityGate:
    settings = api_settings(limits={"rate": rate})
    built = build_gate(settings, project_dir, f"sqlite:///{project_dir / 'state.db'}")
    assert isinstance(built, SecurityGate)
    return built


def too_many(gate: SecurityGate, headers: dict[str, str], address: str = "10.0.0.1") -> DataApiError:
    with pytest.raises(DataApiError) as caught:
        gate.admit(headers, address, "rest")
    assert (caught.value.status, caught.value.code) == (429, "rate-limited")
    return caught.value


def test_per_subject_limit_answers_429_with_retry_after_and_ratelimit_fields(project_dir: Path) -> None:
    gate = limited_gate(project_dir, per_subject="3/minute")
    alice = bearer(token({"sub": "alice", "role": "editor"}))
    for _ in range(3):
        assert gate.admit(alice, "10.0.0.1", "rest").subject == "alice"
    error = too_many(gate, alice)
    headers = error.headers
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert headers["RateLimit-Limit"] == "3"
    assert headers["RateLimit-Remaining"] == "0"
    assert headers["RateLimit-Reset"] == headers["Retry-After"]
    assert headers["RateLimit-Policy"] == "3;w=60"
    assert "3 per minute per subject" in str(error)
    # Another subject has its own budget.
    assert gate.admit(bearer(token({"sub": "bob", "role": "editor"})), "10.0.0.1", "rest").subject == "bob"


def test_per_address_limit_counts_before_authentication(project_dir: Path) -> None:
    gate = limited_gate(project_dir, per_address="2/minute")
    bad = {"x-api-key": "slk_0123456789abcdef_guess"}
    for _ in range(2):
        with pytest.raises(DataApiError) as caught:
            gate.admit(bad, "10.0.0.7", "rest")
        assert caught.value.code == "unknown-key"
    too_many(gate, {}, "10.0.0.7")  # even the anonymous role, from that address
    assert gate.admit({}, "10.0.0.8", "rest").role == "anon"


def test_per_key_limit_and_an_owners_keys_share_the_subject_limit(project_dir: Path) -> None:
    gate = limited_gate(project_dir, per_key="2/minute", per_subject="3/minute")
    store = open_key_store(f"sqlite:///{project_dir / 'state.db'}")
    try:
        _first, key1 = store.create("editor", "carol")
        _second, key2 = store.create("editor", "carol")
    finally:
        store.close()
    gate.admit({"x-api-key": key1}, "a", "rest")
    gate.admit({"x-api-key": key1}, "a", "rest")
    assert too_many(gate, {"x-api-key": key1}).headers["RateLimit-Limit"] == "2"  # the key's own limit
    gate.admit({"x-api-key": key2}, "a", "rest")  # carol's third counted request (the refused one was not counted)
    assert too_many(gate, {"x-api-key": key2}).headers["RateLimit-Limit"] == "3"  # carol's subject limit


def test_several_windows_in_one_limit(project_dir: Path) -> None:
    gate = limited_gate(project_dir, per_address="100/hour;2/minute")
    gate.admit({}, "b", "rest")
    gate.admit({}, "b", "rest")
    assert too_many(gate, {}, "b").headers["RateLimit-Policy"] == "2;w=60"


def test_rate_limited_requests_are_counted(project_dir: Path) -> None:
    from prometheus_client import REGISTRY

    def count() -> float:
        labels = {"operation": "rest", "role": "editor", "limit": "subject"}
        return REGISTRY.get_sample_value("sluice_api_rate_limited_total", labels) or 0.0

    gate = limited_gate(project_dir, per_subject="1/minute")
    dave = bearer(token({"sub": f"dave-{uuid.uuid4()}", "role": "editor"}))
    gate.admit(dave, "a", "rest")
    before = count()
    too_many(gate, dave)
    assert count() == before + 1


@pytest.mark.parametrize(
    ("rate", "message"),
    [({"per_key": "lots"}, "per_key: 'lots' is not a rate limit"), ({"storage": "mongo://x"}, "api.limits.rate.storage")],
)
def test_bad_limits_are_config_errors(project_dir: Path, rate: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        limited_gate(project_dir, **rate)


def test_an_unreachable_redis_lets_requests_through_and_counts_the_error(project_dir: Path) -> None:
    from prometheus_client import REGISTRY

    before = REGISTRY.get_sample_value("sluice_api_rate_limit_storage_errors_total") or 0.0
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    gate = limited_gate(project_dir, per_address="1/minute", storage=f"redis://127.0.0.1:{port}/0")
    assert gate.admit({}, "c", "rest").role == "anon"
    assert gate.admit({}, "c", "rest").role == "anon"
    assert (REGISTRY.get_sample_value("sluice_api_rate_limit_storage_errors_total") or 0.0) >= before + 2


@contextmanager
def tiny_app(sections: dict[str, Any], project_dir: Path) -> Iterator[str]:
    """tiny_app.py in a process of its own on a free port; its URL."""
    sock = free_socket()
    sock.listen(64)
    url = "http://{}:{}".format(*sock.getsockname())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), *sys.path]))}
    process = subprocess.Popen(
        [
            sys.executable,
            str(TINY_APP),
            str(sock.fileno()),
            json.dumps(sections),
            str(project_dir),
            f"sqlite:///{project_dir / 'state.db'}",
        ],
        pass_fds=[sock.fileno()],
        env=env,
    )
    sock.close()
    try:

        def answers() -> bool:
            assert process.poll() is None, "tiny_app.py exited"
            try:
                return httpx.get(f"{url}/whoami", timeout=5).status_code in (200, 401, 429)
            except httpx.TransportError:
                return False

        wait_for(answers, 60, "tiny_app.py to answer")
        yield url
    finally:
        process.terminate()
        process.wait(30)


def two_processes_share_a_limit(storage: str, project_dir: Path) -> tuple[list[int], httpx.Response]:
    """Three requests of one subject to the first process (limit 3/minute), then one to the second: the
    statuses seen by the first (four requests) and the second's response."""
    sections = {"limits": {"rate": {"per_subject": "3/minute", "storage": storage}}}
    subject = f"shared-{uuid.uuid4()}"
    headers = bearer(token({"sub": subject, "role": "editor"}))
    # The readiness probes are anonymous: they do not count against the subject.
    with tiny_app(sections, project_dir) as first, tiny_app(sections, project_dir) as second:
        statuses = [httpx.get(f"{first}/whoami", headers=headers, timeout=10).status_code for _ in range(4)]
        return statuses, httpx.get(f"{second}/whoami", headers=headers, timeout=10)


@pytest.mark.redis
def test_two_server_processes_share_one_limit_through_redis(redis_url: str, project_dir: Path) -> None:
    statuses, answer = two_processes_share_a_limit(redis_url, project_dir)
    assert statuses == [200, 200, 200, 429]
    assert answer.status_code == 429
    assert 1 <= int(answer.headers["Retry-After"]) <= 60
    assert answer.headers["RateLimit-Remaining"] == "0"
    assert answer.json()["errors"][0]["extensions"]["code"] == "rate-limited"


def test_in_memory_each_process_counts_alone(project_dir: Path) -> None:
    """The contrast of the Redis test: with memory:// the second process has its own, unused budget."""
    statuses, answer = two_processes_share_a_limit("memory://", project_dir)
    assert statuses == [200, 200, 200, 429]
    assert answer.status_code == 200
