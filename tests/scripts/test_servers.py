"""The throwaway servers started by scripts/servers/*.sh are ready for change-data-capture; a port another
program holds is named in one line, and a healthy server of the same kind started from another checkout is
reused (never stopped from here)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import psycopg
import pytest

from servers_fixtures import mysql_connect, unavailable

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts" / "servers"


@pytest.mark.postgres
def test_postgres_has_logical_wal_and_replication_slots(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        settings: dict[str, str] = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('wal_level', 'max_replication_slots', 'max_wal_senders', 'listen_addresses')"
            ).fetchall()
        )
    assert settings["wal_level"] == "logical"
    assert int(settings["max_replication_slots"]) > 0
    assert int(settings["max_wal_senders"]) > 0


@pytest.mark.mysql
def test_mariadb_binlog_is_row_based_with_full_metadata(mysql_url: str) -> None:
    conn = mysql_connect(mysql_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@log_bin, @@binlog_format, @@binlog_row_metadata, @@server_id")
            log_bin, binlog_format, row_metadata, server_id = cur.fetchone()
    finally:
        conn.close()
    assert (log_bin, binlog_format, row_metadata) == (1, "ROW", "FULL")
    assert server_id == 1


@pytest.mark.redis
def test_redis_answers_and_keeps_nothing_on_disk(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping()
        assert client.config_get("save")["save"] == ""
        assert client.config_get("appendonly")["appendonly"] == "no"
    finally:
        client.close()


FIXTURES = {"postgres.sh": "pg_url", "mariadb.sh": "mysql_url", "redis.sh": "redis_url"}


@pytest.mark.parametrize(
    ("script", "env"),
    [
        pytest.param("postgres.sh", "SLUICE_TEST_PG_URL", marks=pytest.mark.postgres),
        pytest.param("mariadb.sh", "SLUICE_TEST_MYSQL_URL", marks=pytest.mark.mysql),
        pytest.param("redis.sh", "SLUICE_TEST_REDIS_URL", marks=pytest.mark.redis),
    ],
)
def test_status_and_url_agree_with_the_running_server(script: str, env: str, request: pytest.FixtureRequest) -> None:
    if os.environ.get(env):
        pytest.skip(f"{env} points the tests at another server")
    url = request.getfixturevalue(FIXTURES[script])
    assert subprocess.run([str(SCRIPTS / script), "status"], capture_output=True, check=False).returncode == 0
    printed = subprocess.run([str(SCRIPTS / script), "url"], capture_output=True, text=True, check=True).stdout.strip()
    assert printed == url
    again = subprocess.run([str(SCRIPTS / script), "start"], capture_output=True, text=True, check=True).stdout.strip()
    assert again == url  # start reuses the running server


@pytest.mark.parametrize("script", ["postgres.sh", "mariadb.sh", "redis.sh"])
def test_unknown_command_prints_usage(script: str) -> None:
    done = subprocess.run([str(SCRIPTS / script), "restart-all"], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "usage:" in done.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_port_held_by_another_program_is_named_in_one_line(tmp_path: Path) -> None:
    # A copy of the scripts outside this checkout: its own .tmp/servers holds no running Redis of the test run.
    copy = tmp_path / "scripts" / "servers"
    copy.mkdir(parents=True)
    for name in ("redis.sh", "lib.sh"):
        shutil.copy2(SCRIPTS / name, copy / name)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {**os.environ, "SLUICE_REDIS_PORT": str(port)}
        done = subprocess.run([str(copy / "redis.sh"), "start"], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert f"port {port} on 127.0.0.1 is held by pid {os.getpid()}" in line
    assert "not a server of these scripts" in line and "set SLUICE_REDIS_PORT to a free port" in line


@pytest.mark.redis
def test_start_reuses_a_healthy_server_of_another_checkout_and_stop_leaves_it(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed; scripts/servers/redis.sh start installs it")
    other = tmp_path / "other-checkout"
    shutil.copytree(SCRIPTS, other / "scripts" / "servers")
    mine = tmp_path / "this-checkout"  # not this repository: the test run's own Redis may be running from it
    shutil.copytree(SCRIPTS, mine / "scripts" / "servers")
    ours_script = mine / "scripts" / "servers" / "redis.sh"
    env = {**os.environ, "SLUICE_REDIS_PORT": str(_free_port())}
    theirs = other / "scripts" / "servers" / "redis.sh"
    started = subprocess.run([str(theirs), "start"], capture_output=True, text=True, env=env, check=True).stdout.strip()
    try:
        ours = subprocess.run([str(ours_script), "start"], capture_output=True, text=True, env=env, check=False)
        assert ours.returncode == 0, ours.stderr
        assert ours.stdout.strip() == started
        assert f"reusing the Redis of {other}" in ours.stderr
        stop = subprocess.run([str(ours_script), "stop"], capture_output=True, text=True, env=env, check=True)
        assert "not running" in stop.stderr  # ours never stops another checkout's server
        assert subprocess.run([str(theirs), "status"], capture_output=True, env=env, check=False).returncode == 0
    finally:
        subprocess.run([str(theirs), "stop"], capture_output=True, env=env, check=False)
