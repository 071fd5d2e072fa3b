"""Latency of a live subscription through a sync: a row inserted in MariaDB -> the sync (capture, embedded bus,
apply into PostgreSQL) -> the re-run -> the WebSocket subscriber; ``--inserts`` single-row inserts, one at a
time, ``--pause-s`` apart. Uses the throwaway servers (scripts/servers) and the project of
tests/api/subscriptions/test_subscription_sync.py served as ``sluice serve --sync emp`` does.

    PYTHONPATH=src python bench/subscription_latency.py --inserts 30
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "api" / "subscriptions")]

import test_subscription_sync as project  # noqa: E402
from subscription_clients import ws_client  # noqa: E402

from helpers import wait_for, write_yaml  # noqa: E402
from servers_fixtures import mysql_connect, mysql_database, pg_database  # noqa: E402
from sluice.project.load import load_project  # noqa: E402
from sluice.server.app import create_app  # noqa: E402
from sluice.server.serve import SluiceServer, bind, server_config, url_of  # noqa: E402
from sluice.server.services import ServerSettings, Services  # noqa: E402

MYSQL = "mysql://sluice:sluice@127.0.0.1:23306/sluice"
POSTGRES = "postgresql://postgres@127.0.0.1:25432/postgres"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inserts", type=int, default=30)
    parser.add_argument("--pause-s", type=float, default=0.2)
    args = parser.parse_args()
    name = f"apisub_bench_{uuid.uuid4().hex[:8]}"
    with mysql_database(MYSQL, name) as my_url, pg_database(POSTGRES, name) as pg_url:
        measure(my_url, pg_url, args.inserts, args.pause_s)


def measure(my_url: str, pg_url: str, inserts: int, pause_s: float) -> None:
    served = project.Served("", my_url, pg_url)
    served.mariadb("CREATE TABLE employes (id INT PRIMARY KEY, nom VARCHAR(40) NOT NULL, dept VARCHAR(20))")
    served.mariadb("INSERT INTO employes VALUES (1, 'Ana', 'R&D')")
    text = project.PROJECT.format(hr=my_url, warehouse=pg_url, secret=project.SECRET)
    services = Services(load_project(write_yaml(Path(tempfile.mkdtemp()), text)), ServerSettings(syncs=("emp",), workers=False))
    sock = bind("127.0.0.1", 0)
    server = SluiceServer(server_config(create_app(services)), services)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 60, "the server")
        served = project.Served(url_of(sock), my_url, pg_url)
        wait_for(lambda: served.warehouse_rows() == 1, 60, "the snapshot")
        seconds: list[float] = []
        writer = mysql_connect(my_url)
        with ws_client(served.base_url) as ws, writer.cursor() as cur:
            ws.init({"Authorization": f"Bearer {project.token('reader')}"})
            ws.subscribe("1", "subscription { employes_aggregate { count } }")
            ws.next_payload("1")
            for key in range(2, inserts + 2):
                cur.execute("INSERT INTO employes VALUES (%s, 'x', 'R&D')", (key,))  # autocommit: committed here
                started = time.perf_counter()
                while ws.next_payload("1")["data"]["employes_aggregate"][0]["count"] != key:
                    pass
                seconds.append(time.perf_counter() - started)
                time.sleep(pause_s)
        writer.close()
        seconds.sort()
        ms = [s * 1000 for s in seconds]
        p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
        print(
            f"commit -> subscriber, {len(ms)} inserts: min {ms[0]:.0f} ms, median {statistics.median(ms):.0f} ms, "
            f"p90 {p90:.0f} ms, max {ms[-1]:.0f} ms"
        )
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()
        services.stop()


if __name__ == "__main__":
    main()
