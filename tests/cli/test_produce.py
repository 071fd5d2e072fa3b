"""``sluice produce faker`` against the real broker: the count, the same records for the same seed, the share of
malformed records, keys, options refused in one line, and the pacing (on an injected clock)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from helpers import read_topic, write_yaml
from servers_fixtures import delete_kafka_prefix
from sluice.pacing import FakeClock, TokenBucket
from sluice.streaming.produce import produce_events

pytestmark = pytest.mark.kafka


def sluice(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sluice", *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def topics(kafka_url: str) -> Iterator[list[str]]:
    """Three topic names for this test; the topics and the groups that read them are deleted afterwards."""
    prefix = f"test-produce-{uuid.uuid4().hex[:10]}"
    made: list[str] = [f"{prefix}-{n}" for n in range(3)]
    yield made
    delete_kafka_prefix(AdminClient({"bootstrap.servers": kafka_url.removeprefix("kafka://")}), prefix)


def test_writes_the_count_with_the_malformed_share_and_the_same_records_for_the_same_seed(
    kafka_url: str, topics: list[str]
) -> None:
    args = ["--schema", "transactions", "--rate", "0", "--count", "3000", "--seed", "11", "--malformed", "0.1"]
    first = sluice("produce", "faker", *args, "--topic", topics[0], "--bootstrap", kafka_url)
    assert first.returncode == 0, first.stderr
    assert "produced 3000 records" in first.stdout and f"to {topics[0]}" in first.stdout
    malformed = int(first.stdout.split("(", 1)[1].split(" malformed", 1)[0])
    assert 200 <= malformed <= 400
    second = sluice("produce", "faker", *args, "--topic", topics[1], "--bootstrap", kafka_url.removeprefix("kafka://"))
    assert second.returncode == 0, second.stderr
    one, two = read_topic(kafka_url, topics[0]), read_topic(kafka_url, topics[1])
    assert len(one) == len(two) == 3000
    by_key = {m.key(): m.value() for m in one}
    assert by_key == {m.key(): m.value() for m in two}
    assert len({m.partition() for m in one}) == 3  # a new topic gets --partitions 3
    not_json = sum(1 for value in by_key.values() if not _is_json(value))
    assert 0 < not_json < malformed
    good = json.loads(by_key[b"1"]) if _is_json(by_key[b"1"]) else json.loads(by_key[b"2"])
    assert set(good) >= {"transaction_id", "user_id", "product_id", "amount", "currency", "ts", "status"}


def test_a_second_run_into_the_same_topic_repeats_no_id_and_id_start_sets_the_first(kafka_url: str, topics: list[str]) -> None:
    """dataflow360's "latest per id" merged unrelated transactions: every run numbered its ids from 1."""
    args = ["--schema", "transactions", "--rate", "0", "--count", "500", "--topic", topics[0], "--bootstrap", kafka_url]
    for seed in ("7", "7", "8"):  # the same seed twice: same records but for their ids
        done = sluice("produce", "faker", *args, "--seed", seed)
        assert done.returncode == 0, done.stderr
    messages = read_topic(kafka_url, topics[0])
    assert sorted(int(m.key()) for m in messages) == list(range(1, 1501))  # run 2 from 501, run 3 from 1001
    ids = [json.loads(m.value())["transaction_id"] for m in messages]
    assert sorted(ids) == list(range(1, 1501))
    again = sluice("produce", "faker", *args, "--seed", "7", "--id-start", "1", "--topic", topics[1])
    assert again.returncode == 0, again.stderr
    assert sorted(int(m.key()) for m in read_topic(kafka_url, topics[1])) == list(range(1, 501))
    assert "--id-start" in sluice("produce", "faker", "--help").stdout


def _is_json(value: bytes) -> bool:
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def test_a_project_connection_names_the_broker(tmp_path: Path, kafka_url: str, topics: list[str]) -> None:
    write_yaml(tmp_path, f"name: demo\nconnections:\n  events: {kafka_url}\n  lite: sqlite:///x.db\nobjects: []\n")
    done = sluice("produce", "faker", "--schema", "users", "--count", "10", "--rate", "0", "--topic", topics[0],
                  "--connection", "events", "--project", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(read_topic(kafka_url, topics[0])) == 10
    wrong = sluice(
        "produce", "faker", "--schema", "users", "--topic", topics[1], "--connection", "lite", "--project", str(tmp_path)
    )
    assert wrong.returncode == 2 and "--connection 'lite' is sqlite://" in wrong.stderr and "Traceback" not in wrong.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "fast", "--bootstrap", "127.0.0.1:29092"], "is not a number of records per second"),
        (["--bootstrap", "127.0.0.1:29092", "--connection", "x"], "give either --bootstrap"),
        ([], "give either --bootstrap"),
        (["--bootstrap", "127.0.0.1:29092", "--start", "yesterday"], "--start 'yesterday' is not an ISO 8601 time"),
        (["--bootstrap", "127.0.0.1:29092", "--malformed", "2"], "--malformed"),
    ],
)
def test_bad_options_are_one_line_errors(args: list[str], message: str) -> None:
    done = sluice("produce", "faker", "--schema", "users", "--topic", "never-created", *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_the_rate_is_paced_by_the_token_bucket(kafka_url: str, topics: list[str]) -> None:
    clock = FakeClock()
    bucket = TokenBucket(200.0, burst=20.0, clock=clock.now, sleep=clock.sleep)
    done = produce_events(kafka_url.removeprefix("kafka://"), topics[2], "products", rate=200.0, count=1000, bucket=bucket)
    assert done.records == 1000 and done.malformed == 0
    assert clock.t == pytest.approx((1000 - bucket.burst) / 200.0)  # 1000 records at 200/s, one burst free
    assert len(read_topic(kafka_url, topics[2])) == 1000
