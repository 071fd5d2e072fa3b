"""Create base A's ``articles`` table with sample rows, and empty what earlier runs of the example left.

    python examples/articles/seed.py           # fresh start: articles_a.articles in PostgreSQL, an empty base B
    python examples/articles/seed.py change    # create, update and delete articles in base A (as the REST API does)

Uses the URLs and names of sluice.yaml (the throwaway servers of scripts/servers/): base A's schema from the
sync's ``tables``, base B's database from the ``base_b`` URL, the slot from ``capture.slot``. Needs PyMySQL
and psycopg.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pymysql
import yaml

HERE = Path(__file__).resolve().parent

ARTICLES = """CREATE TABLE {schema}.articles (
  id SERIAL PRIMARY KEY,
  title VARCHAR(200) NOT NULL,
  content TEXT NOT NULL,
  author VARCHAR(100),
  tags JSONB,
  published BOOLEAN NOT NULL DEFAULT false,
  views BIGINT NOT NULL DEFAULT 0,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ
)"""

SAMPLES = [
    (
        "Introduction à GraphQL",
        "GraphQL décrit les données qu'un client demande, et rien de plus.",
        "Alice",
        ["graphql", "api"],
        True,
    ),
    ("Kafka pour les débutants", "Un topic, des partitions, des groupes de consommateurs.", "Bruno", ["kafka"], True),
    ("Surveiller avec Prometheus", "Compteurs, jauges, histogrammes : et des tableaux Grafana.", "Chloé", ["monitoring"], True),
    ("Pentaho ou script Python ?", "Extraire, transformer, charger : deux façons de faire.", "Alice", ["etl"], False),
    ("WSO2 comme passerelle", "Sécurité, authentification, limitation de débit.", "David", ["api", "gateway"], True),
    ("Brouillon", "À compléter 🚧", None, None, False),
]


def config() -> dict[str, Any]:
    return dict(yaml.safe_load((HERE / "sluice.yaml").read_text(encoding="utf-8")))


def urls() -> dict[str, str]:
    return dict(config()["connections"])


def names() -> tuple[str, str, str, str]:
    """(sync name, base A's schema, base B's database, the replication slot and publication)."""
    sync = config()["syncs"][0]
    schema = sync["tables"][0].partition(".")[0]
    return sync["name"], schema, urlsplit(urls()["base_b"]).path.strip("/"), sync["capture"]["slot"]


def fresh() -> None:
    connections = urls()
    sync, schema, base_b, slot_name = names()
    from psycopg.types.json import Jsonb

    with psycopg.connect(connections["base_a"], autocommit=True) as pg:
        for (slot,) in pg.execute("SELECT slot_name FROM pg_replication_slots WHERE slot_name = %s", (slot_name,)).fetchall():
            pg.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        pg.execute(f"DROP PUBLICATION IF EXISTS {slot_name}")
        pg.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        pg.execute(f"CREATE SCHEMA {schema}")
        pg.execute(ARTICLES.format(schema=schema))
        with pg.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {schema}.articles (title, content, author, tags, published) VALUES (%s, %s, %s, %s, %s)",
                [(t, c, a, None if tags is None else Jsonb(tags), p) for t, c, a, tags, p in SAMPLES],
            )
    from sluice.connectors.mysql import connect_arguments

    arguments = connect_arguments(connections["base_b"])
    arguments["database"] = None
    conn = pymysql.connect(**arguments, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{base_b}`")
        cur.execute(f"CREATE DATABASE `{base_b}` CHARACTER SET utf8mb4")
        cur.execute("CREATE DATABASE IF NOT EXISTS sluice_cdc")
        if cur.execute("SHOW TABLES FROM sluice_cdc LIKE 'positions'"):
            cur.execute("DELETE FROM sluice_cdc.positions WHERE sync = %s", (sync,))
    conn.close()
    print(f"PostgreSQL {schema}.articles with {len(SAMPLES)} rows; MariaDB {base_b} empty")


def change() -> None:
    """A new article, an edited one, a published draft and a deleted one, written to base A."""
    schema = names()[1]
    with psycopg.connect(urls()["base_a"], autocommit=True) as pg:
        pg.execute(
            f"INSERT INTO {schema}.articles (title, content, author, published) "
            "VALUES ('Synchroniser deux bases', 'Capture, bus, application : sans trou ni doublon.', 'Emma', true)"
        )
        pg.execute(f"UPDATE {schema}.articles SET views = views + 42, updated_at = now() WHERE title LIKE 'Kafka%'")
        pg.execute(f"UPDATE {schema}.articles SET published = true, updated_at = now() WHERE title LIKE 'Pentaho%'")
        pg.execute(f"DELETE FROM {schema}.articles WHERE title = 'Brouillon'")
    print("base A: 1 article created, 2 updated, 1 deleted")


def ping() -> None:
    """Exit 0 when every connection of sluice.yaml answers (servers started elsewhere, e.g. from another checkout)."""
    from sluice.connectors.mysql import connect_arguments

    for url in urls().values():
        if url.startswith("mysql"):
            pymysql.connect(**connect_arguments(url) | {"database": None}).close()
        else:
            psycopg.connect(url).close()


if __name__ == "__main__":
    {"fresh": fresh, "change": change, "ping": ping}[sys.argv[1] if len(sys.argv) > 1 else "fresh"]()
