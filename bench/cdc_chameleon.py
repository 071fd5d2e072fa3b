"""pg_chameleon, ``bench/cdc.py``'s peer: MariaDB -> PostgreSQL replication driven from its command line.

pg_chameleon (PyPI ``pg_chameleon``, BSD licence) lives in ``bench/.venvs/pgchameleon`` (``bench/peers/setup_venvs.sh
pgchameleon``, made on first use). It refuses to run as root, so when the benchmark is root it runs as ``nobody``.
Its configuration is written into a temporary home (``HOME=<tmp>``, ``<tmp>/.pg_chameleon/configuration/bench.yml``)
with the documented example's replica settings (``replica_batch_size`` and ``replay_max_rows`` 10,000,
``sleep_loop`` 1 s) unless told otherwise.

How it works (and so what "caught up" means): a *read* process decodes the binlog and COPYs the row images into
``sch_chameleon.t_log_replica_*`` in batches; a *replay* process calls ``sch_chameleon.fn_replay_mysql`` which
applies the stored rows to the target tables in binlog order. The benchmark knows it has caught up when the
marker row written after the workload is in the target (replay is in order), then checks the tables' fingerprints.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from cdc_workload import mysql_parts, mysql_url, pg_url

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venvs" / "pgchameleon"
CHAMELEON = VENV / "bin" / "chameleon"
SOURCE = "mysql"


def ensure_venv() -> None:
    """Create bench/.venvs/pgchameleon (pinned pg_chameleon) when it is missing."""
    if CHAMELEON.exists():
        return
    done = subprocess.run(
        ["bash", str(HERE / "peers" / "setup_venvs.sh"), "pgchameleon"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"cannot install pg_chameleon:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def version() -> str:
    done = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('pg_chameleon'), "
         "m.version('mysql-replication'), m.version('PyMySQL'))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    chameleon, replication, pymysql = done.stdout.split()
    return f"pg_chameleon {chameleon} (mysql-replication {replication}, PyMySQL {pymysql})"


class Chameleon:
    """One pg_chameleon source ``mysql`` replicating ``mappings`` (MariaDB database -> PostgreSQL schema)."""

    def __init__(self, mappings: dict[str, str], batch_rows: int = 10_000, sleep_loop: float = 1.0) -> None:
        ensure_venv()
        self.home = Path(tempfile.mkdtemp(prefix="bench_pgch_"))
        self.mappings = mappings
        self.log = self.home / "replica.log"
        self.process: subprocess.Popen[bytes] | None = None
        root = os.geteuid() == 0
        self.user = pwd.getpwnam("nobody") if root else None
        self._write_config(batch_rows, sleep_loop)

    def _write_config(self, batch_rows: int, sleep_loop: float) -> None:
        my = mysql_parts(mysql_url())
        pg = mysql_parts(pg_url())  # same URL shape: host, port, user, password, database
        conf = self.home / ".pg_chameleon"
        for sub in ("configuration", "logs", "pid"):
            (conf / sub).mkdir(parents=True, exist_ok=True)
        config = {
            "pid_dir": str(conf / "pid"),
            "log_dir": str(conf / "logs"),
            "log_dest": "stdout",
            "log_level": "info",
            "log_days_keep": 1,
            "rollbar_key": "",
            "rollbar_env": "",
            "type_override": {},
            "pg_conn": {
                "host": pg["host"], "port": str(pg["port"]), "user": pg["user"],
                "password": pg["password"] or "unused",  # an empty one breaks its libpq string
                "database": pg["database"], "charset": "utf8",
            },
            "sources": {
                SOURCE: {
                    "db_conn": {
                        "host": my["host"], "port": str(my["port"]), "user": my["user"], "password": my["password"],
                        "charset": "utf8", "connect_timeout": 10,
                    },
                    "schema_mappings": self.mappings,
                    "limit_tables": [], "skip_tables": [], "grant_select_to": [],
                    "lock_timeout": "120s",
                    "my_server_id": 9101,
                    "replica_batch_size": batch_rows,
                    "replay_max_rows": batch_rows,
                    "batch_retention": "1 day",
                    "copy_max_memory": "300M",
                    "copy_mode": "file",
                    "out_dir": str(self.home),
                    "sleep_loop": sleep_loop,
                    "on_error_replay": "continue",
                    "on_error_read": "continue",
                    "auto_maintenance": "disabled",
                    "gtid_enable": False,
                    "type": "mysql",
                    "skip_events": {"insert": [], "delete": [], "update": []},
                    "keep_existing_schema": False,
                    "net_read_timeout": 600,
                }
            },
            "fillfactor": {},
        }  # fmt: skip
        (conf / "configuration" / "bench.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        if self.user:
            for path in [self.home, *self.home.rglob("*")]:
                os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def _popen(self, *args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
        out = log.open("ab") if log else subprocess.DEVNULL
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env["HOME"] = str(self.home)
        kwargs: dict[str, Any] = {}
        if self.user:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        return subprocess.Popen(
            [str(CHAMELEON), *args, "--config", "bench"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.home, start_new_session=True, **kwargs,
        )  # fmt: skip

    def command(self, *args: str, timeout_s: float = 600) -> None:
        """Run ``chameleon ARGS --config bench`` to its end; SystemExit with its log on failure."""
        log = self.home / "commands.log"
        process = self._popen(*args, log=log)
        if process.wait(timeout=timeout_s) != 0:
            raise SystemExit(f"chameleon {' '.join(args)} failed:\n{log.read_text()[-3000:]}")

    def prepare(self) -> float:
        """create_replica_schema, add_source, init_replica (its snapshot of the mapped databases); seconds."""
        started = time.perf_counter()
        self.command("create_replica_schema")
        self.command("add_source", "--source", SOURCE)
        self.command("init_replica", "--source", SOURCE, "--debug")  # --debug: in the foreground, so we can wait
        return time.perf_counter() - started

    def start(self) -> None:
        """start_replica in the foreground (log_dest stdout), as a child of this process."""
        self.process = self._popen("start_replica", "--source", SOURCE, log=self.log)

    def stop(self) -> None:
        """SIGINT (its graceful stop) to the replica's process group, SIGKILL after 20 s."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)
