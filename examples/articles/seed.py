"""Create base A's ``articles`` table with sample rows, and empty what earlier runs of the example left.

    python examples/articles/seed.py           # fresh start: articles_a.articles in PostgreSQL, an empty base B
    python examples/articles/seed.py change    # create, update and delete articles in base A (as the REST API does)

Uses the URLs of sluice.yaml (the throwaway servers of scripts/servers/). Needs PyMySQL and psycopg.
"""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg
import pymysql
import yaml

HERE = Path(__file__).resolve().parent
BASE_B = "sluice_example_articles_b"
SLOT = "sluice_example_articles"

ARTICLES = """CREATE TABLE articles_a.articles (
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
    ("Introduction à GraphQL", "GraphQL décrit les données qu'un client demande, et rien de plus.", "Alice", ["graphql", "api"], True),
    ("Kafka pour les débutants", "Un topic, des partitions, des groupes de consommateurs.", "Bruno", ["kafka"], True),
    ("Surveiller avec Prometheus", "Compteurs, jauges, histogrammes : et des tableaux Grafana.", "Chloé", ["monitoring"], True),
    ("Pentaho ou script Python ?", "Extraire, transformer, charger : deux façons de faire.", "Alice", ["etl"], False),
    ("WSO2 comme passerelle", "Sécurité, authentification, limitation de débit.", "David", ["api", "gateway"], True),
    ("Brouillon", "À compléter 🚧", None, None, False),
]


def urls() -> dict[str, str]:
    return dict(yaml.safe_load((HERE / "sluice.yaml").read_text(encoding="utf-8"))["connections"])


def fresh() -> None:
    connections = urls()
    from psycopg.types.json import Jsonb

    with psycopg.connect(connections["base_a"], autocommit=True) as pg:
        for (slot,) in pg.execute("SELECT slot_name FROM pg_replication_slots WHERE slot_name = %s", (SLOT,)).fetchall():
            pg.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        pg.execute(f"DROP PUBLICATION IF EXISTS {SLOT}")
        pg.execute("DROP SCHEMA IF EXISTS articles_a CASCADE")
        pg.execute("CREATE SCHEMA articles_a")
        pg.execute(ARTICLES)
        with pg.cursor() as cur:
            cur.executemany(
                "INSERT INTO articles_a.articles (title, content, author, tags, published) VALUES (%s, %s, %s, %s, %s)",
                [(t, c, a, None if tags is None else Jsonb(tags), p) for t, c, a, tags, p in SAMPLES],
            )
    from sluice.connectors.mysql import connect_arguments

    arguments = connect_arguments(connections["base_b"])
    arguments["database"] = None
    conn = pymysql.connect(**arguments, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{BASE_B}`")
        cur.execute(f"CREATE DATABASE `{BASE_B}` CHARACTER SET utf8mb4")
        cur.execute("CREATE DATABASE IF NOT EXISTS sluice_cdc")
        if cur.execute("SHOW TABLES FROM sluice_cdc LIKE 'positions'"):
            cur.execute("DELETE FROM sluice_cdc.positions WHERE sync = 'articles'")
    conn.close()
    print(f"PostgreSQL articles_a.articles with {len(SAMPLES)} rows; MariaDB {BASE_B} empty")


def change() -> None:
    """A new article, an edited one, a published draft and a deleted one, written to base A."""
    with psycopg.connect(urls()["base_a"], autocommit=True) as pg:
        pg.execute(
            "INSERT INTO articles_a.articles (title, content, author, published) "
            "VALUES ('Synchroniser deux bases', 'Capture, bus, application : sans trou ni doublon.', 'Emma', true)"
        )
        pg.execute("UPDATE articles_a.articles SET views = views + 42, updated_at = now() WHERE title LIKE 'Kafka%'")
        pg.execute("UPDATE articles_a.articles SET published = true, updated_at = now() WHERE title LIKE 'Pentaho%'")
        pg.execute("DELETE FROM articles_a.articles WHERE title = 'Brouillon'")
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
