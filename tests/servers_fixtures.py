"""Fixtures for the throwaway PostgreSQL, MariaDB, Kafka, Redis and S3 servers (scripts/servers/*.sh).

- ``s3_url`` (session): the S3-compatible server (versitygw, ``scripts/servers/s3.sh``) as
  ``http://ACCESS_KEY:SECRET_KEY@127.0.0.1:29000``, or ``SLUICE_TEST_S3_URL``; tests make their own buckets.

- ``pg_url`` / ``mysql_url`` / ``kafka_url`` / ``redis_url`` (session): the server's URL (``kafka://127.0.0.1:29092``
  for Kafka, ``redis://127.0.0.1:26379/0`` for Redis). ``SLUICE_TEST_PG_URL`` / ``SLUICE_TEST_MYSQL_URL`` /
  ``SLUICE_TEST_KAFKA_URL`` / ``SLUICE_TEST_REDIS_URL`` point the tests at
  an existing server instead; otherwise the script's ``start`` runs once (installing the server with apt-get,
  or fetching Kafka's jars with Maven, when missing); `make test` (scripts/test) stops the servers it started
  when the suite ends, a bare `pytest` leaves them running for the next run.
  When the server cannot be started the tests that need it are skipped, or fail when ``CI=true``.
- ``pg_db_url`` / ``mysql_db_url`` (function): a fresh, uniquely named database on that server, dropped
  after the test (``pg_database`` / ``mysql_database``: the same as context managers, for wider scopes;
  PostgreSQL's are made ahead and dropped on a thread: :class:`PgDatabases`).
- ``kafka_ns_url`` (function): ``kafka_url`` with a ``?namespace=`` of the test's own, whose topics and consumer
  groups are deleted after the test (:func:`delete_kafka_namespace`: a broker holding thousands of topics slows
  down and restarts slowly); a test that makes its namespace itself calls :func:`delete_kafka_namespace`.
- ``own_pg`` (function): a PostgreSQL of the test's own (:class:`OwnPostgres`, ``scripts/servers/postgres.sh``
  with its own folder and a free port) that the test may stop, start, freeze and thaw; never the shared one.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import unquote, urlsplit, urlunsplit

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts" / "servers"
START_TIMEOUT_S = 900  # the first start may install the server with apt-get (or fetch Kafka with Maven)


def start_server(script: str, override_env: str) -> str:
    """The URL of a running server: from ``override_env``, else from ``<script> start``."""
    override = os.environ.get(override_env, "").strip()
    if override:
        return override
    command = [str(SCRIPTS / script), "start"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        unavailable(f"scripts/servers/{script} start could not run: {exc}")
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        output = (done.stdout + done.stderr).strip()
        unavailable(
            f"scripts/servers/{script} start failed (exit {done.returncode}); set {override_env} to use another server:\n{output}"
        )
    return lines[-1].strip()


def unavailable(message: str) -> NoReturn:
    """Skip the test, or fail it on CI where every server must be available."""
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def with_database(url: str, database: str) -> str:
    """``url`` pointing at ``database`` instead of its own."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def unique_name() -> str:
    return f"sluice_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def pg_url() -> str:
    return start_server("postgres.sh", "SLUICE_TEST_PG_URL")


@pytest.fixture(scope="session")
def mysql_url() -> str:
    return start_server("mariadb.sh", "SLUICE_TEST_MYSQL_URL")


@pytest.fixture(scope="session")
def kafka_url() -> str:
    return start_server("kafka.sh", "SLUICE_TEST_KAFKA_URL")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return start_server("redis.sh", "SLUICE_TEST_REDIS_URL")


@pytest.fixture(scope="session")
def s3_url() -> str:
    """``http://ACCESS_KEY:SECRET_KEY@127.0.0.1:29000``: the versitygw endpoint with its test credentials."""
    return start_server("s3.sh", "SLUICE_TEST_S3_URL")


class PgDatabases:
    """Fresh databases of one PostgreSQL server, made ahead and dropped on threads of their own.

    ``CREATE DATABASE`` copies a template (0.2-0.8 s here) and hundreds of tests take a fresh database: made
    while the previous tests run, they cost a test nothing. A failure to create is raised by :meth:`take`.
    """

    AHEAD = 4

    def __init__(self, url: str) -> None:
        self.url = url
        self.ready: queue.Queue[str | BaseException] = queue.Queue()
        self.creates: queue.Queue[str | None] = queue.Queue()
        self.drops: queue.Queue[str | None] = queue.Queue()
        self.threads = [
            threading.Thread(target=self._serve, args=(self.creates, "CREATE DATABASE {}"), daemon=True),
            threading.Thread(target=self._serve, args=(self.drops, "DROP DATABASE IF EXISTS {} WITH (FORCE)"), daemon=True),
        ]
        for thread in self.threads:
            thread.start()
        for _ in range(self.AHEAD):
            self.creates.put(unique_name())

    def _serve(self, requests: queue.Queue[str | None], statement: str) -> None:
        import psycopg
        from psycopg import sql

        conn: Any = None
        while (name := requests.get()) is not None:
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.url, autocommit=True)
                conn.execute(sql.SQL(statement).format(sql.Identifier(name)))
                if requests is self.creates:
                    self.ready.put(name)
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    conn.close()
                if requests is self.creates:
                    self.ready.put(exc)
        if conn is not None:
            conn.close()

    def take(self) -> str:
        """The name of a new, empty database (another is made for a later test)."""
        self.creates.put(unique_name())
        made = self.ready.get(timeout=300)
        if isinstance(made, BaseException):
            raise made
        return made

    def give_back(self, name: str) -> None:
        """Drop ``name`` (forcing its connections closed) on the pool's thread."""
        self.drops.put(name)

    def close(self) -> None:
        """Drop the databases made ahead and wait for the drops asked for."""
        self.creates.put(None)
        self.threads[0].join(timeout=120)
        while not self.ready.empty():
            made = self.ready.get()
            if isinstance(made, str):
                self.drops.put(made)
        self.drops.put(None)
        self.threads[1].join(timeout=120)


_pg_pools: dict[str, PgDatabases] = {}


def _close_pg_pools() -> None:
    for pool in _pg_pools.values():
        pool.close()


atexit.register(_close_pg_pools)


@contextmanager
def pg_database(pg_url: str, name: str | None = None) -> Iterator[str]:
    """A new database ``name`` (default: a unique one, made ahead by :class:`PgDatabases`) on the server of
    ``pg_url``, dropped on exit; its URL."""
    if name is None:
        pool = _pg_pools.get(pg_url) or _pg_pools.setdefault(pg_url, PgDatabases(pg_url))
        name = pool.take()
        try:
            yield with_database(pg_url, name)
        finally:
            pool.give_back(name)
        return
    import psycopg
    from psycopg import sql

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(pg_url, name)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def pg_db_url(pg_url: str) -> Iterator[str]:
    with pg_database(pg_url) as url:
        yield url


def mysql_connect(url: str) -> Any:
    """A PyMySQL connection (autocommit) to a ``mysql://user:password@host:port/db`` URL."""
    import pymysql

    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        database=parts.path.lstrip("/") or None,
        autocommit=True,
    )


@contextmanager
def mysql_database(mysql_url: str, name: str | None = None) -> Iterator[str]:
    """A new database ``name`` (default: a unique one) on the server of ``mysql_url``, dropped on exit; its URL."""
    name = name or unique_name()
    mysql_execute(mysql_url, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield with_database(mysql_url, name)
    finally:
        mysql_execute(mysql_url, f"DROP DATABASE IF EXISTS `{name}`")


def mysql_execute(url: str, statement: str) -> None:
    """Run one statement on a new connection to ``url``."""
    conn = mysql_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


@pytest.fixture
def mysql_db_url(mysql_url: str) -> Iterator[str]:
    with mysql_database(mysql_url) as url:
        yield url


CHROMIUM = Path(os.environ.get("SLUICE_CHROMIUM", "/usr/bin/chromium"))
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium (``SLUICE_CHROMIUM``, default /usr/bin/chromium), installed by scripts/chromium.sh when
    missing; driven by Playwright with ``executable_path`` (``playwright install`` cannot download here)."""
    if CHROMIUM.is_file():
        return str(CHROMIUM)
    script = SCRIPTS.parent / "chromium.sh"
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        output = done.stderr.strip()
        unavailable(f"Chromium is missing and scripts/chromium.sh could not install it (exit {done.returncode}):\n{output}")
    return done.stdout.strip().splitlines()[-1]


class OwnPostgres:
    """A PostgreSQL server of one test: ``url``; :meth:`stop` and :meth:`start` it (a clean shutdown, its
    clients' connections ended), :meth:`freeze` and :meth:`thaw` it (SIGSTOP / SIGCONT of every process of
    the server: it stops answering without closing anything, as an unreachable host does)."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.env = dict(os.environ, SLUICE_PG_DIR=str(folder), SLUICE_PG_PORT=str(port))
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _script(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPTS / "postgres.sh"), command], env=self.env, capture_output=True, text=True, timeout=START_TIMEOUT_S
        )

    def start(self) -> None:
        done = self._script("start")
        if done.returncode != 0:
            unavailable(f"a PostgreSQL of the test's own did not start:\n{done.stdout}{done.stderr}")

    def stop(self) -> None:
        done = self._script("stop")
        assert done.returncode == 0, done.stdout + done.stderr

    def _pids(self) -> list[int]:
        pidfile = self.folder / "data" / "postmaster.pid"
        if not pidfile.exists():
            return []
        postmaster = int(pidfile.read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
        return [postmaster, *map(int, children)]

    def freeze(self) -> None:
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, number: int) -> None:
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):  # a backend that ended meanwhile
                os.kill(pid, number)

    def kill(self) -> None:
        """End the server at once, whatever its state (the fixture's last resort)."""
        for pid in self._pids()[:1]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def own_pg() -> Iterator[OwnPostgres]:
    # Under the checkout, not pytest's tmp_path: the postgres user must reach the folder (root's /tmp one is 0700).
    folder = SCRIPTS.parent.parent / ".tmp" / "servers" / f"pg-{unique_name()}"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = OwnPostgres(folder, port)
    server.start()
    try:
        yield server
    finally:
        try:
            server.thaw()
            server.stop()
        finally:
            server.kill()  # nothing left running if stopping failed
            shutil.rmtree(folder, ignore_errors=True)
            Path(f"{folder}.lock").unlink(missing_ok=True)


GROUP_DRAIN_S = 15.0
"""How long :func:`delete_kafka_namespace` retries a group that still has members (the tests' sessions time out
in 6 to 10 s)."""


def delete_kafka_namespace(bus_url: str) -> None:
    """Delete the topics and consumer groups of the namespace of a ``kafka://...?namespace=`` bus URL (nothing for
    another bus or no namespace)."""
    from sluice.bus.kafka import KafkaBus
    from sluice.bus.registry import open_bus

    if not bus_url.startswith("kafka:"):
        return
    bus = open_bus(bus_url)
    try:
        if isinstance(bus, KafkaBus) and bus.namespace:
            delete_kafka_prefix(bus.admin, bus.kafka_name(""))
    finally:
        bus.close()


def delete_kafka_prefix(admin: Any, prefix: str) -> None:
    """Delete the topics and consumer groups whose names start with ``prefix`` (``admin``: a confluent-kafka
    ``AdminClient``). A group still holding a member (a killed process, until its session times out) is tried
    again on a thread of its own for up to :data:`GROUP_DRAIN_S`, then left: the test does not wait for it
    (:func:`wait_for_group_deletions` waits for all at the end of the session)."""
    from confluent_kafka import KafkaException

    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    for future in admin.delete_topics(topics, operation_timeout=10).values() if topics else ():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            if exc.args[0].code() != _kafka_error("UNKNOWN_TOPIC_OR_PART"):  # deleted meanwhile
                raise
    listed = admin.list_consumer_groups(request_timeout=10).result(timeout=30).valid
    busy = _delete_groups(admin, [g.group_id for g in listed if g.group_id.startswith(prefix)])
    if busy:
        thread = threading.Thread(target=_drain_groups, args=(admin, busy), name=f"drain-{prefix}", daemon=True)
        thread.start()
        _group_drains.append(thread)


def _kafka_error(name: str) -> Any:
    from confluent_kafka import KafkaError

    return getattr(KafkaError, name)


def _delete_groups(admin: Any, groups: list[str]) -> list[str]:
    """Delete ``groups``; those that still have a member."""
    from confluent_kafka import KafkaException

    busy: list[str] = []
    for group, future in admin.delete_consumer_groups(groups, request_timeout=10).items() if groups else ():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            if exc.args[0].code() == _kafka_error("NON_EMPTY_GROUP"):
                busy.append(group)
            elif exc.args[0].code() != _kafka_error("GROUP_ID_NOT_FOUND"):
                raise
    return busy


def _drain_groups(admin: Any, groups: list[str]) -> None:
    deadline = time.monotonic() + GROUP_DRAIN_S
    while groups and time.monotonic() < deadline:
        time.sleep(0.5)
        with contextlib.suppress(Exception):
            groups = _delete_groups(admin, groups)


_group_drains: list[threading.Thread] = []


def wait_for_group_deletions() -> None:
    """Wait for the consumer groups being deleted on threads (at most :data:`GROUP_DRAIN_S` from the last)."""
    for thread in _group_drains:
        thread.join(timeout=GROUP_DRAIN_S + 30)


atexit.register(wait_for_group_deletions)


def kafka_namespace_url(kafka_url: str, prefix: str = "test") -> str:
    """``kafka_url`` with a new ``?namespace=<prefix>-<12 hex digits>`` (``&namespace=`` after other options)."""
    return kafka_url + ("&" if "?" in kafka_url else "?") + f"namespace={prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def kafka_ns_url(kafka_url: str) -> Iterator[str]:
    url = kafka_namespace_url(kafka_url)
    try:
        yield url
    finally:
        delete_kafka_namespace(url)
