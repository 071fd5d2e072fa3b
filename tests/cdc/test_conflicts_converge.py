"""Both-ways syncs converge under concurrent writes of the same keys on both sides, for each conflict policy
(:mod:`sluice.cdc.conflicts`, :mod:`sluice.cdc.apply_conflicts`): real MariaDB <-> PostgreSQL, embedded bus."""

from __future__ import annotations

import random
import threading
import uuid
from pathlib import Path

import msgspec
import psycopg
import pytest
from tests.servers_fixtures import mysql_connect

from helpers import wait_for
from sluice.bus.embedded import EmbeddedBus
from sluice.cdc.config import SyncSettings
from sluice.cdc.runtime import SyncRuntime
from sluice.cdc.verify import verify_table

pytestmark = [pytest.mark.mysql, pytest.mark.postgres]
ROWS = 200
OPERATIONS = 1_500


def my_writer(url: str, seed: int, done: list[int]) -> None:
    """``OPERATIONS`` changes to MariaDB's ``items``: updates of random keys (``src = 'my'``), inserts, deletes."""
    conn = mysql_connect(url)
    rng = random.Random(seed)
    try:
        with conn.cursor() as cur:
            for _ in range(OPERATIONS):
                key, roll = rng.randint(1, ROWS + 20), rng.random()
                if roll < 0.1:
                    cur.execute("DELETE FROM items WHERE id = %s", (key,))
                elif roll < 0.2:
                    cur.execute("INSERT IGNORE INTO items VALUES (%s, %s, 'my')", (key, rng.randrange(100)))
                else:
                    cur.execute("UPDATE items SET v = v + 1, src = 'my' WHERE id = %s", (key,))
                done[0] += 1
    finally:
        conn.close()


def pg_writer(url: str, seed: int, done: list[int]) -> None:
    """The same on PostgreSQL's ``public.items`` with ``src = 'pg'``."""
    rng = random.Random(seed)
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(OPERATIONS):
            key, roll = rng.randint(1, ROWS + 20), rng.random()
            if roll < 0.1:
                conn.execute("DELETE FROM public.items WHERE id = %s", (key,))
            elif roll < 0.2:
                conn.execute("INSERT INTO public.items VALUES (%s, %s, 'pg') ON CONFLICT DO NOTHING", (key, rng.randrange(100)))
            else:
                conn.execute("UPDATE public.items SET v = v + 1, src = 'pg' WHERE id = %s", (key,))
            done[0] += 1


@pytest.mark.parametrize("policy", ["newer-wins", "source-wins", "target-wins"])
def test_concurrent_updates_of_the_same_keys_on_both_sides_converge(
    mysql_db_url: str, pg_db_url: str, tmp_path: Path, policy: str
) -> None:
    my = mysql_connect(mysql_db_url)
    with my.cursor() as cur:
        cur.execute("CREATE TABLE items (id INT PRIMARY KEY, v INT, src VARCHAR(10))")
        cur.execute("INSERT INTO items VALUES " + ", ".join(f"({i}, 0, 'seed')" for i in range(1, ROWS + 1)))
    my.close()
    raw = {"name": f"sync_{uuid.uuid4().hex[:8]}", "source": "my", "target": "pg", "tables": ["items"]}
    sync = msgspec.convert({**raw, "direction": "both", "conflicts": policy}, SyncSettings)
    urls = {"my": mysql_db_url, "pg": pg_db_url}
    bus = EmbeddedBus(str(tmp_path / "bus.db"))
    rt = SyncRuntime(sync, urls, bus, tmp_path / ".sluice")
    failure: list[BaseException] = []

    def run() -> None:
        try:
            rt.run()
        except BaseException as exc:
            failure.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    try:
        with psycopg.connect(pg_db_url, autocommit=True) as pg:

            def snapshotted() -> bool:
                try:
                    return pg.execute("SELECT count(*) FROM public.items").fetchone() == (ROWS,)
                except psycopg.errors.UndefinedTable:
                    return False

            wait_for(lambda: snapshotted() or bool(failure), 60, "the snapshot")
            wait_for(
                lambda: len(rt.directions) == 2 and all(d.capture and d.capture.position for d in rt.directions),
                60,
                "both captures streaming",
            )
        counts = [[0], [0]]
        writers = [
            threading.Thread(target=my_writer, args=(mysql_db_url, 1, counts[0])),
            threading.Thread(target=pg_writer, args=(pg_db_url, 2, counts[1])),
        ]
        for w in writers:
            w.start()
        for w in writers:
            w.join()
        assert counts == [[OPERATIONS], [OPERATIONS]]
        # Quiet: every change committed on either side until now is captured and applied.
        positions = rt.source_positions()
        wait_for(lambda: rt.caught_up(positions) or bool(failure), 120, "both sides caught up")
        assert not failure, failure
        conflicts = sum(t.conflicts for t in rt.state.snapshot_status().tables)
        verdict = verify_table(mysql_db_url, pg_db_url, rt.directions[0].refs[0], max_keys=ROWS)
    finally:
        rt.stop()
        runner.join(60)
        try:
            SyncRuntime(sync, urls, bus, tmp_path / ".sluice").drop()
        finally:
            bus.close()
    assert conflicts > 0  # the writers did meet on the same keys
    assert verdict.equal, (verdict.source_rows, verdict.target_rows, verdict.differences)
