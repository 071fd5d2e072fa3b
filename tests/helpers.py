"""Helpers shared by tests: small projects and event-log checks."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sluice import events as ev
from sluice.project.load import load_project
from sluice.project.model import Project
from sluice.runtime.history import run_events
from sluice.runtime.run import open_backends
from sluice.state.sqlite import SqliteStateStore
from sluice.urls import kafka_servers

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "examples" / "seed-002" / "Objets.json"


def seed_project(tmp_path: Path) -> Path:
    """A copy of the seed-002 Objets.json in its own folder (its .sluice/ lands there)."""
    target = tmp_path / "seed"
    target.mkdir(exist_ok=True)
    shutil.copy(SEED, target / "Objets.json")
    return target / "Objets.json"


def write_yaml(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sluice.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def rewrite_keeping_size_and_mtime(path: Path, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` (same length) and put the modification time back, as cp -p, rsync -t or tar x leave a file."""
    assert len(old) == len(new) and old
    stat = path.stat()
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)


def events_of(project: Project, run_id: str | None = None) -> list[tuple[int, ev.AnyEvent]]:
    with open_backends(project) as backends:
        return list(run_events(backends, project, run_id))


def check_ordering(project: Project, log: list[tuple[int, ev.AnyEvent]]) -> None:
    """No ObjectReady before every parent is loaded (or fresh); no object loaded twice."""
    done: set[int] = set()
    loaded = Counter[int]()
    positions = [position for position, _ in log]
    assert positions == sorted(positions)
    assert isinstance(log[0][1], ev.RunStarted)
    assert isinstance(log[-1][1], ev.RunFinished)
    for _, event in log:
        if isinstance(event, ev.ObjectReady):
            missing = [p for p in project.objects[event.object_id].parents if p not in done]
            assert not missing, f"ObjectReady for {event.object_id} before parents {missing} loaded"
        elif isinstance(event, ev.ObjectLoaded):
            loaded[event.object_id] += 1
            done.add(event.object_id)
        elif isinstance(event, ev.ObjectSkipped) and event.fresh:
            done.add(event.object_id)
    twice = [oid for oid, count in loaded.items() if count > 1]
    assert not twice, f"objects loaded twice: {twice}"


def summary_json(stdout: str) -> dict[str, Any]:
    last = [line for line in stdout.splitlines() if line.startswith("{")][-1]
    result: dict[str, Any] = json.loads(last)
    return result


def load(path: Path) -> Project:
    return load_project(path)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def loaded_count(state_db: Path) -> int:
    if not state_db.exists():
        return 0
    store = SqliteStateStore(state_db)
    try:
        runs = store.list_runs(limit=1)
        if not runs:
            return 0
        return sum(1 for s in store.object_states(runs[0].run_id).values() if s.status == "loaded")
    finally:
        store.close()


def read_topic(kafka_url: str, topic: str, timeout_s: float = 60.0) -> list[Any]:
    """Every message ``topic`` holds now (``confluent_kafka.Message``s up to its high watermarks, read by a group
    of its own from the start). Raises AssertionError when they have not all come within ``timeout_s``."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": kafka_servers(kafka_url), "group.id": f"t-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    found: list[Any] = []
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        while len(found) < total and time.monotonic() < deadline:
            found += [m for m in consumer.consume(total - len(found), 1.0) if m.error() is None]
    finally:
        consumer.close()
    assert len(found) == total, f"{len(found)} of the {total} messages of {topic} came in {timeout_s:g} s"
    return found


def sluice_cli(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m sluice ARGS`` in a subprocess: its exit status and captured text."""
    return subprocess.run([sys.executable, "-m", "sluice", *args], capture_output=True, text=True, timeout=timeout_s, check=False)


@contextmanager
def logged(name: str, level: int = logging.DEBUG) -> Iterator[list[logging.LogRecord]]:
    """The records of logger ``name`` at ``level`` or above meanwhile, caught by a handler on that logger itself (the
    CLI's logging set-up, run by earlier tests, stops ``sluice`` loggers from propagating to pytest's and sets levels)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger(name)
    handler, before = Keep(level), logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)


_handed_out: set[int] = set()


def free_port() -> int:
    """A free TCP port on 127.0.0.1 below 32768, never the same twice in a session."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        if port in _handed_out:
            continue
        _handed_out.add(port)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port between 20000 and 32000")


def scrape(port: int, name: str, labels: dict[str, str]) -> float:
    """One sample of a Prometheus metric exposed on 127.0.0.1:port (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0
