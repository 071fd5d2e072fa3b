"""librdkafka's log lines and errors routed into Sluice's logging: one line per broker outage, not one per retry."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest
from confluent_kafka import KafkaError

from sluice.bus.kafka_common import ClientLog, Reachability
from sluice.streaming.status import StreamStatus


def test_an_outage_is_one_line_every_ten_seconds_and_its_end_one_more(caplog: pytest.LogCaptureFixture) -> None:
    reach = Reachability("127.0.0.1:1", logging.getLogger("test.kafka"))
    with caplog.at_level(logging.INFO, logger="test.kafka"):
        for _ in range(50):  # librdkafka: one error per connection attempt
            reach.on_error(KafkaError(KafkaError._TRANSPORT, "Connection refused"))
        assert (reach.describe() or "").startswith("Kafka at 127.0.0.1:1 unreachable since ")
        reach.reached()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "unreachable since" in lines[0] and lines[0].endswith("(Connection refused); retrying")
    assert lines[1].startswith("Kafka at 127.0.0.1:1 reachable again after")
    assert reach.describe() is None


def test_a_stream_whose_broker_is_away_says_so_instead_of_lag_0() -> None:
    status = StreamStatus(1, "tx")
    status.set_lag({("t", 0): 0})
    status.set_unreachable("Kafka at 127.0.0.1:1 unreachable since 06:12:29")
    assert status.progress_line() == (
        "tx: starting, Kafka at 127.0.0.1:1 unreachable since 06:12:29, retrying; last batch not known yet"
    )
    assert status.snapshot()["unreachable"] == "Kafka at 127.0.0.1:1 unreachable since 06:12:29"
    status.set_unreachable(None)
    assert "lag 0" in status.progress_line()


def test_a_stream_consumer_of_a_broker_that_is_down_prints_no_librdkafka_lines() -> None:
    """librdkafka writes its log lines to stderr itself unless given a ``logger``: a process is needed to see them. A
    stream consumer first asks for the topics' metadata, for 10 s, then gives up with one TransientError."""
    script = textwrap.dedent(
        """
        import logging
        from sluice.errors import TransientError
        from sluice.streaming.consumer import StreamConsumer
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        try:
            StreamConsumer("127.0.0.1:1", ["t"], "g", {})
        except TransientError as exc:
            print(exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Kafka at 127.0.0.1:1 cannot be reached")
    assert "%3|" not in done.stderr and "FAIL" not in done.stderr, done.stderr
    assert done.stderr.count("unreachable since") <= 1, done.stderr  # one line per 10 s of outage, at most


def test_librdkafka_lines_are_logged_at_the_python_level_of_their_syslog_level(caplog: pytest.LogCaptureFixture) -> None:
    client = ClientLog("test.rdkafka")
    with caplog.at_level(logging.DEBUG, logger="test.rdkafka"):
        client.log(6, "%s [%s] %s", "BGQUEUE", "rdkafka#producer-1", "Purging 1 unserved events")  # info: hidden by default
        client.log(4, "%s [%s] %s", "GETPID", "producer", "Coordinator load in progress: retrying")
        client.log(3, "%s [%s] %s", "FAIL", "consumer", "Connection refused")  # one per retry: Reachability reports
    assert [(r.levelno, r.getMessage().split()[0]) for r in caplog.records] == [
        (logging.INFO, "BGQUEUE"),
        (logging.WARNING, "GETPID"),
        (logging.DEBUG, "FAIL"),
    ]
