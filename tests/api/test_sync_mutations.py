"""Seed 000's flow over HTTP on ``sluice serve``'s app: ``create_employe`` writes MariaDB, ``sync_employes``
(``api.sync_mutations``) carries the change to PostgreSQL, ``employes``/``employe_par_id``/``stats_employes``
read PostgreSQL; once with a pass per call, once with the server hosting the sync (``--sync``)."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from api_support import execute_all, fetch, served

from sluice.project.load import load_project
from sluice.server.app import create_app
from sluice.server.services import ServerSettings, Services

pytestmark = [pytest.mark.mysql, pytest.mark.postgres]
SECRET = "seed-000-test-secret-0123456789abcdef"
PEOPLE = [("Martin", "Informatique", "52000.00"), ("Bernard", "Finance", "48500.50"), ("Dubois", "RH", "41000.00")]
PEOPLE += [("Leroy", "Informatique", "56000.00")]

PROJECT = """\
name: seed000
connections:
  hr: {hr}
  warehouse: {warehouse}
syncs:
  - {{name: {sync}, source: hr, target: warehouse, tables: [employes], snapshot: initial}}
api:
  sources:
    - {{connection: warehouse, tables: [employes]}}
  mutations: {{employes: hr}}
  operations:
    employes: {{list: employes, by_pk: employe_par_id, aggregate: stats_employes, insert_one: create_employe}}
  sync_mutations:
    sync_employes: {{sync: {sync}, roles: [editor], resync: true, timeout_s: 60}}
  auth:
    anon_role: anon
    jwt: {{algorithms: [HS256], secret: "{secret}", audience: hr}}
  roles:
    anon:
      employes: {{select: {{}}}}
    editor:
      employes: {{select: {{}}, insert: {{columns: [nom, departement, salaire]}}}}
"""

SYNC = """mutation($resync: Boolean, $tables: [String!]) {
  sync_employes(resync: $resync, tables: $tables) {
    sync mode state error resynced applied { snapshot insert total }
    tables { source_table target_table state position lag_s applied { insert } }
  }
}"""
CREATE = """mutation($nom: String!) {
  create_employe(object: {nom: $nom, departement: "RH", salaire: "39000.50"}) { id nom }
}"""
BY_ID = "query($id: Int!) { employe_par_id(id: $id) { nom departement salaire } }"
STATS = "{ stats_employes(group_by: [departement], limit: 50) { keys { departement } count avg { salaire } } }"


@pytest.fixture
def seed000(tmp_path: Path, mysql_db_url: str, pg_db_url: str) -> tuple[Path, str, str, str]:
    """A project with MariaDB ``employes`` (4 rows) synced to an empty PostgreSQL database; (folder, sync name, urls)."""
    execute_all(
        mysql_db_url,
        [
            "CREATE TABLE employes (id INT AUTO_INCREMENT PRIMARY KEY, nom VARCHAR(60) NOT NULL, "
            "departement VARCHAR(40) NOT NULL, salaire DECIMAL(10,2))",
            "INSERT INTO employes (nom, departement, salaire) VALUES " + ", ".join(f"('{n}', '{d}', {s})" for n, d, s in PEOPLE),
        ],
    )
    sync = f"apiseed_{uuid.uuid4().hex[:8]}"
    text = PROJECT.format(hr=mysql_db_url, warehouse=pg_db_url, sync=sync, secret=SECRET)
    (tmp_path / "sluice.yaml").write_text(text)
    return tmp_path, sync, mysql_db_url, pg_db_url


def bearer(role: str) -> dict[str, str]:
    token = jwt.encode({"role": role, "sub": "test", "aud": "hr", "exp": time.time() + 600}, SECRET, "HS256")
    return {"authorization": f"Bearer {token}"}


def gql(client: httpx.Client, query: str, variables: dict[str, Any] | None = None, role: str | None = None) -> Any:
    response = client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=bearer(role) if role else {})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def refused(client: httpx.Client, query: str, role: str | None, variables: dict[str, Any] | None = None) -> tuple[int, str]:
    response = client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=bearer(role) if role else {})
    error = response.json()["errors"][0]
    return response.status_code, error["extensions"]["code"]


def expected_stats(rows: list[tuple[str, str]]) -> dict[str, tuple[int, Decimal]]:
    groups: dict[str, list[Decimal]] = {}
    for departement, salaire in rows:
        groups.setdefault(departement, []).append(Decimal(salaire))
    return {d: (len(v), sum(v, Decimal(0)) / len(v)) for d, v in groups.items()}


def stats_of(data: Any) -> dict[str, tuple[int, Decimal]]:
    return {
        g["keys"]["departement"]: (g["count"], Decimal(g["avg"]["salaire"]).quantize(Decimal("0.0001")))
        for g in data["stats_employes"]
    }


def test_seed_000_flow_with_a_pass_per_call(seed000: tuple[Path, str, str, str]) -> None:
    folder, sync, my_url, pg_url = seed000
    project = load_project(str(folder))
    with served(create_app(Services(project, ServerSettings(workers=False, resume=False)))) as client:
        # a role without the grant is refused before anything runs
        assert refused(client, SYNC, None) == (403, "permission-denied")
        first = gql(client, SYNC, role="editor")["sync_employes"]
        assert (first["sync"], first["mode"], first["state"], first["error"]) == (sync, "pass", "done", None)
        assert first["applied"] == {"snapshot": 4, "insert": 0, "total": 4}
        (table,) = first["tables"]
        assert table["source_table"].endswith(".employes") and table["target_table"] == "public.employes"
        assert fetch(pg_url, "SELECT count(*) FROM public.employes") == [(4,)]

        # the schema follows the table the sync created; queries read PostgreSQL
        assert len(gql(client, "{ employes(order_by: [{id: asc}]) { id nom } }")["employes"]) == 4
        created = gql(client, CREATE, {"nom": "Zoé"}, role="editor")["create_employe"]
        assert created["nom"] == "Zoé"
        assert fetch(my_url, f"SELECT nom FROM employes WHERE id = {created['id']}") == [("Zoé",)]  # written to MariaDB
        assert gql(client, BY_ID, {"id": created["id"]})["employe_par_id"] is None  # not in PostgreSQL yet
        assert refused(client, CREATE, None, {"nom": "Anon"}) == (403, "permission-denied")

        second = gql(client, SYNC, role="editor")["sync_employes"]
        assert (second["mode"], second["state"]) == ("pass", "done")
        assert second["applied"] == {"snapshot": 0, "insert": 1, "total": 1}
        assert second["tables"][0]["position"] and second["tables"][0]["applied"] == {"insert": 1}
        row = gql(client, BY_ID, {"id": created["id"]})["employe_par_id"]
        assert row == {"nom": "Zoé", "departement": "RH", "salaire": "39000.50"}

        # without a limit a list costs max_rows (10,000) times its 5 fields: over the default max_cost (50,000)
        assert refused(client, STATS.replace(", limit: 50", ""), None) == (400, "query-too-costly")
        rows = [(d, s) for _, d, s in PEOPLE] + [("RH", "39000.50")]
        assert stats_of(gql(client, STATS)) == {
            d: (n, avg.quantize(Decimal("0.0001"))) for d, (n, avg) in expected_stats(rows).items()
        }

        # a resync of one table copies it again
        execute_all(pg_url, ["DELETE FROM public.employes WHERE nom = 'Martin'"])  # drift in the target
        again = gql(client, SYNC, {"resync": True, "tables": ["employes"]}, role="editor")["sync_employes"]
        assert again["state"] == "done" and again["resynced"] == [table["source_table"]]
        assert again["applied"]["snapshot"] == 5
        assert fetch(pg_url, "SELECT count(*) FROM public.employes") == [(5,)]
        assert refused(client, SYNC, "editor", {"resync": True, "tables": ["nope"]}) == (400, "unknown-table")
        assert refused(client, SYNC, "editor", {"tables": ["employes"]}) == (400, "validation-failed")


def test_seed_000_flow_with_the_server_hosting_the_sync(seed000: tuple[Path, str, str, str]) -> None:
    folder, sync, _, pg_url = seed000
    project = load_project(str(folder))
    settings = ServerSettings(workers=False, resume=False, syncs=(sync,))
    with served(create_app(Services(project, settings))) as client:
        first = gql(client, SYNC, role="editor")["sync_employes"]
        assert (first["mode"], first["state"], first["error"]) == ("hosted", "done", None)
        assert fetch(pg_url, "SELECT count(*) FROM public.employes") == [(4,)]  # the snapshot, applied before it answered

        created = gql(client, CREATE, {"nom": "Noé"}, role="editor")["create_employe"]
        second = gql(client, SYNC, role="editor")["sync_employes"]
        assert (second["mode"], second["state"]) == ("hosted", "done")
        assert second["applied"]["insert"] == 1, second
        assert second["tables"][0]["state"] == "streaming" and second["tables"][0]["lag_s"] is not None
        assert gql(client, BY_ID, {"id": created["id"]})["employe_par_id"]["nom"] == "Noé"
        assert stats_of(gql(client, STATS))["RH"] == (2, Decimal("40000.2500"))
        assert refused(client, SYNC, "anon") == (403, "permission-denied")


def test_a_sync_that_cannot_run_answers_state_error(seed000: tuple[Path, str, str, str]) -> None:
    folder, sync, _, _ = seed000
    path = folder / "sluice.yaml"
    path.write_text(path.read_text().replace("tables: [employes], snapshot", "tables: [absent], snapshot"))
    project = load_project(str(folder))
    with served(create_app(Services(project, ServerSettings(workers=False, resume=False)))) as client:
        answer = gql(
            client, "mutation { sync_employes { sync mode state error applied { total } tables { state } } }", role="editor"
        )
    result = answer["sync_employes"]
    assert (result["sync"], result["mode"], result["state"]) == (sync, "pass", "error")
    assert "absent" in result["error"] and result["applied"] == {"total": 0}, result
