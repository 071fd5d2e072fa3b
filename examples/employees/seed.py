"""Create the example's source tables with sample rows, and empty what earlier runs of the example left.

    python examples/employees/seed.py            # fresh start: MariaDB sources with 20 employees, no target tables
    python examples/employees/seed.py change     # writes on both sides of the both-ways sync (after its first run)

Uses the URLs and names of sluice.yaml (the throwaway servers of scripts/servers/): the MariaDB databases of
the connections ``hr`` and ``hr2``, the PostgreSQL schemas of the syncs' ``target_namespace``, the syncs' names.
Needs PyMySQL and psycopg (``pip install -e '.[mysql,postgres]'``).
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


def config() -> dict[str, Any]:
    return dict(yaml.safe_load((HERE / "sluice.yaml").read_text(encoding="utf-8")))


def database_of(url: str) -> str:
    return urlsplit(url).path.strip("/")


EMPLOYES = """CREATE TABLE employes (
  id INT AUTO_INCREMENT PRIMARY KEY,
  nom VARCHAR(100) NOT NULL,
  prenom VARCHAR(100) NOT NULL,
  email VARCHAR(190) NOT NULL UNIQUE,
  poste VARCHAR(100),
  departement ENUM('Informatique', 'Finance', 'RH', 'Ventes', 'Direction') NOT NULL,
  salaire DECIMAL(10, 2),
  date_embauche DATE,
  actif BOOLEAN NOT NULL DEFAULT TRUE,
  numero_secu VARCHAR(64),
  cree_le TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  modifie_le DATETIME(6) NULL
) CHARACTER SET utf8mb4"""

PEOPLE = [
    ("Martin", "Camille", "Développeuse backend", "Informatique", "52000.00", "2019-03-11"),
    ("Bernard", "Lucas", "Analyste financier", "Finance", "48500.50", "2020-09-01"),
    ("Dubois", "Léa", "Chargée de recrutement", "RH", "41000.00", "2018-01-15"),
    ("Thomas", "Hugo", "Commercial", "Ventes", "39000.00", "2021-06-21"),
    ("Robert", "Chloé", "Directrice technique", "Direction", "98000.00", "2015-04-02"),
    ("Richard", "Nathan", "Administrateur systèmes", "Informatique", "47000.00", "2017-11-30"),
    ("Petit", "Manon", "Comptable", "Finance", "43000.00", "2022-02-14"),
    ("Durand", "Louis", "Commercial senior", "Ventes", "51000.75", "2016-08-08"),
    ("Leroy", "Emma", "Data engineer", "Informatique", "56000.00", "2023-01-09"),
    ("Moreau", "Jules", "Responsable paie", "RH", "45500.00", "2019-10-01"),
    ("Simon", "Inès", "Contrôleuse de gestion", "Finance", "50500.00", "2020-03-16"),
    ("Laurent", "Gabriel", "Chef de projet", "Informatique", "58000.00", "2014-05-19"),
    ("Lefèbvre", "Zoé", "Assistante commerciale", "Ventes", "32000.00", "2024-04-02"),
    ("Michel", "Raphaël", "Directeur financier", "Direction", "105000.00", "2012-09-24"),
    ("Garcia", "Jade", "Développeuse front-end 🚀", "Informatique", "49000.00", "2021-12-01"),
    ("David", "Arthur", "Juriste social", "RH", "47500.00", "2018-07-07"),
    ("Bertrand", "Lina", "Acheteuse", "Finance", "42000.00", "2022-10-10"),
    ("Roux", "Adam", "Technicien support", "Informatique", "34000.00", "2023-09-04"),
    ("Vincent", "Alice", "Responsable grands comptes", "Ventes", "60000.00", "2013-02-28"),
    ("Fournier", "Noé", "Stagiaire", "Informatique", None, None),
]


def urls() -> dict[str, str]:
    return dict(config()["connections"])


def mysql(url: str, database: str | None = None) -> pymysql.connections.Connection:  # type: ignore[type-arg]
    from sluice.connectors.mysql import connect_arguments

    arguments = connect_arguments(url)
    arguments["database"] = database
    return pymysql.connect(**arguments, autocommit=True)


def rows() -> list[tuple[object, ...]]:
    found = []
    for i, (nom, prenom, poste, departement, salaire, embauche) in enumerate(PEOPLE, start=1):
        email = f"{prenom}.{nom}@exemple.fr".lower().replace("é", "e").replace("è", "e").replace("ë", "e")
        found.append((nom, prenom, email, poste, departement, salaire, embauche, i % 7 != 0, f"1{i:02d}0575123456{i % 10}"[:15]))
    return found


def fresh() -> None:
    from sluice.cdc.pg_capture import default_slot

    connections = urls()
    syncs = config()["syncs"]
    databases = [database_of(connections[name]) for name in ("hr", "hr2")]
    names = [sync["name"] for sync in syncs]
    conn = mysql(connections["hr"])
    with conn.cursor() as cur:
        for database in databases:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
            cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
            cur.execute(f"USE `{database}`")
            cur.execute(EMPLOYES)
            cur.executemany(
                "INSERT INTO employes (nom, prenom, email, poste, departement, salaire, date_embauche, actif, numero_secu) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                rows(),
            )
        cur.execute("CREATE DATABASE IF NOT EXISTS sluice_cdc")
        if cur.execute("SHOW TABLES FROM sluice_cdc LIKE 'positions'"):
            cur.execute("DELETE FROM sluice_cdc.positions WHERE sync IN %s", (names,))
    conn.close()
    schemas = [sync["target_namespace"] for sync in syncs]
    slots = [default_slot(sync["name"], side) for sync in syncs for side in (sync["source"], sync["target"])]
    with psycopg.connect(connections["warehouse"], autocommit=True) as pg:
        for schema in schemas:
            pg.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        if pg.execute("SELECT to_regclass('sluice_cdc.positions')").fetchone() != (None,):
            pg.execute("DELETE FROM sluice_cdc.positions WHERE sync = ANY(%s)", (names,))
        for (slot,) in pg.execute("SELECT slot_name FROM pg_replication_slots WHERE slot_name = ANY(%s)", (slots,)).fetchall():
            pg.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    print(f"MariaDB {', '.join(databases)}: employes with {len(PEOPLE)} rows; PostgreSQL schemas {', '.join(schemas)} dropped")


def change() -> None:
    """A raise in MariaDB, a new hire and a departure in PostgreSQL: the both-ways sync carries each to the other side."""
    connections = urls()
    (both,) = [sync for sync in config()["syncs"] if sync.get("direction") == "both"]
    conn = mysql(connections["hr2"], database_of(connections["hr2"]))
    with conn.cursor() as cur:
        cur.execute("UPDATE employes SET salaire = salaire * 1.05, modifie_le = NOW(6) WHERE departement = 'Informatique'")
    conn.close()
    schema = both["target_namespace"]
    with psycopg.connect(connections["warehouse"], autocommit=True) as pg:
        pg.execute(
            f'INSERT INTO "{schema}".employes (id, nom, prenom, email, poste, departement, salaire, date_embauche, actif, cree_le) '
            "VALUES (1001, 'Nguyen', 'Sarah', 'sarah.nguyen@exemple.fr', 'Data analyst', 'Informatique', 47000, '2025-01-06', 1, now())"
        )
        pg.execute(f"DELETE FROM \"{schema}\".employes WHERE email = 'noe.fournier@exemple.fr'")
    print("MariaDB: Informatique salaries +5%; PostgreSQL: Sarah Nguyen hired (id 1001), Noé Fournier left")


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
