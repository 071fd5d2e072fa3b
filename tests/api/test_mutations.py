"""Mutations against PostgreSQL, MariaDB and SQLite: insert one and many, update and delete by filter and by
key, upsert, each with ``returning``; one statement on PostgreSQL; constraint errors as 400 with nothing
changed; a mutation routed to another connection (seed 000: write MariaDB, read PostgreSQL)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from api_support import Client, execute_all, fetch, make_api


def one_statement_on_postgres(client: Client) -> None:
    if client.dialect == "postgresql":
        assert client.last_statements == 1
    else:
        assert client.last_statements <= 3


def test_insert_many_and_one_with_returning_and_relationships(client: Client) -> None:
    data = client.data(
        'mutation { insert_employes(objects: [{id: 10, nom: "Zed", dept_id: 2, salaire: "12.50"}, {id: 11, nom: "Yan"}]) '
        "{ affected_rows returning { id nom salaire dept { nom } } } }"
    )
    one_statement_on_postgres(client)
    result = data["insert_employes"]
    assert result["affected_rows"] == 2
    rows = sorted(result["returning"], key=lambda r: r["id"])
    assert [(r["id"], r["nom"], r["dept"]) for r in rows] == [(10, "Zed", {"nom": "Ventes"}), (11, "Yan", None)]
    assert Decimal(rows[0]["salaire"]) == Decimal("12.5")
    data = client.data('mutation { insert_employes_one(object: {id: 12, nom: "Xia", actif: true}) { id nom actif } }')
    one_statement_on_postgres(client)
    assert data["insert_employes_one"] == {"id": 12, "nom": "Xia", "actif": True}
    assert fetch(client.url, "SELECT nom FROM employes WHERE id >= 10 ORDER BY id") == [("Zed",), ("Yan",), ("Xia",)]


def test_update_by_filter_and_by_key(client: Client) -> None:
    data = client.data(
        'mutation { update_employes(where: {dept_id: {_eq: 1}}, _set: {salaire: "1.25"}) '
        "{ affected_rows returning { id salaire } } }"
    )
    one_statement_on_postgres(client)
    assert data["update_employes"]["affected_rows"] == 2
    assert sorted((r["id"], Decimal(r["salaire"])) for r in data["update_employes"]["returning"]) == [
        (1, Decimal("1.25")),
        (2, Decimal("1.25")),
    ]
    data = client.data('mutation { update_employes_by_pk(pk_columns: {id: 3}, _set: {nom: "Cyd"}) { id nom } }')
    assert data["update_employes_by_pk"] == {"id": 3, "nom": "Cyd"}
    assert client.data('mutation { update_employes_by_pk(pk_columns: {id: 99}, _set: {nom: "X"}) { id } }') == {
        "update_employes_by_pk": None
    }
    assert fetch(client.url, "SELECT nom FROM employes WHERE id = 3") == [("Cyd",)]


def test_delete_by_filter_and_by_key(client: Client) -> None:
    data = client.data(
        'mutation { delete_employes(where: {nom: {_in: ["Bob", "Dan"]}}) { affected_rows returning { nom dept { nom } } } }'
    )
    one_statement_on_postgres(client)
    assert data["delete_employes"]["affected_rows"] == 2
    assert sorted(r["nom"] for r in data["delete_employes"]["returning"]) == ["Bob", "Dan"]
    assert client.data("mutation { delete_employes_by_pk(id: 5) { nom } }") == {"delete_employes_by_pk": {"nom": "Eva"}}
    assert client.data("mutation { delete_employes_by_pk(id: 5) { nom } }") == {"delete_employes_by_pk": None}
    assert fetch(client.url, "SELECT id FROM employes ORDER BY id") == [(1,), (3,)]


def test_upsert_updates_listed_columns_or_does_nothing(client: Client) -> None:
    data = client.data(
        'mutation { insert_employes(objects: [{id: 1, nom: "Anna", salaire: "1"}, {id: 20, nom: "New"}], '
        "on_conflict: {update_columns: [nom]}) { affected_rows returning { id nom } } }"
    )
    one_statement_on_postgres(client)
    assert sorted((r["id"], r["nom"]) for r in data["insert_employes"]["returning"]) == [(1, "Anna"), (20, "New")]
    assert fetch(client.url, "SELECT nom, salaire FROM employes WHERE id = 1")[0][0] == "Anna"
    assert Decimal(str(fetch(client.url, "SELECT salaire FROM employes WHERE id = 1")[0][0])) == Decimal("5000.5")
    client.data('mutation { insert_employes_one(object: {id: 2, nom: "Ignored"}, on_conflict: {update_columns: []}) { id } }')
    assert fetch(client.url, "SELECT nom FROM employes WHERE id = 2") == [("Bob",)]


@pytest.mark.parametrize(
    "document",
    [
        'mutation { insert_employes_one(object: {id: 1, nom: "Dup"}) { id } }',  # primary key
        'mutation { insert_employes_one(object: {id: 30, nom: "X", dept_id: 99}) { id } }',  # foreign key
        "mutation { delete_employes_by_pk(id: 1) { id } x: delete_dept_by_pk(id: 1) { id } }",  # referenced row
    ],
)
def test_constraint_violations_are_400_and_change_nothing(client: Client, document: str) -> None:
    before = fetch(client.url, "SELECT id, nom FROM employes ORDER BY id"), fetch(client.url, "SELECT id FROM dept ORDER BY id")
    status, body = client.run(document)
    assert status == 400, body
    assert body["errors"][0]["extensions"]["code"] == "constraint-violation"
    assert "insert" not in str(body).lower()
    after = fetch(client.url, "SELECT id, nom FROM employes ORDER BY id"), fetch(client.url, "SELECT id FROM dept ORDER BY id")
    if "delete_employes_by_pk" in document:  # the first field ran in its own transaction
        assert after[0] == [r for r in before[0] if r[0] != 1]
    else:
        assert after == before


def test_a_bad_value_is_400(client: Client) -> None:
    status, body = client.run('mutation { insert_employes_one(object: {id: 40, nom: "X", embauche: "not a date"}) { id } }')
    assert status == 400, body


def test_mutations_over_get_are_refused(client: Client) -> None:
    from sluice.api.execute import run_request
    from sluice.api.principal import Principal

    answer = run_request(client.api, {"query": "mutation { delete_employes_by_pk(id: 1) { id } }"}, Principal("admin"), "GET")
    assert answer.status == 405
    assert fetch(client.url, "SELECT count(*) FROM employes") == [(5,)]


@pytest.mark.postgres
@pytest.mark.mysql
def test_a_mutation_routed_to_mariadb_reads_back_from_mariadb(pg_db_url: str, mysql_db_url: str) -> None:
    """Seed 000: ``create_employe`` writes MariaDB, ``employes`` reads PostgreSQL (a sync joins them)."""
    from api_support import DDL

    execute_all(pg_db_url, DDL)
    execute_all(mysql_db_url, [*DDL[:2], "INSERT INTO dept VALUES (1, 'R&D')"])
    api = make_api(
        {
            "sources": [{"connection": "warehouse", "tables": ["employes", "dept"]}],
            "mutations": {"employes": "hr"},
            "operations": {
                "employes": {
                    "list": "employes",
                    "by_pk": "employe_par_id",
                    "aggregate": "stats_employes",
                    "insert_one": "create_employe",
                }
            },
        },
        {"warehouse": pg_db_url, "hr": mysql_db_url},
    )
    client = Client(api, pg_db_url)
    try:
        data = client.data('mutation { create_employe(object: {id: 7, nom: "Gus", dept_id: 1}) { id nom } }')
        assert data == {"create_employe": {"id": 7, "nom": "Gus"}}
        assert api.databases["hr"].statements >= 1
        assert fetch(mysql_db_url, "SELECT nom FROM employes") == [("Gus",)]
        assert fetch(pg_db_url, "SELECT count(*) FROM employes WHERE id = 7") == [(0,)]
        assert client.data("{ employe_par_id(id: 1) { nom } }") == {"employe_par_id": {"nom": "Ana"}}
        stats = client.data("{ stats_employes(group_by: [dept_id]) { keys { dept_id } count } }")["stats_employes"]
        assert {(s["keys"]["dept_id"], s["count"]) for s in stats} == {(1, 2), (2, 2), (None, 1)}
        status, body = client.run('mutation { create_employe(object: {id: 8, nom: "H"}) { dept { nom } } }')
        assert (status, body["errors"][0]["extensions"]["code"]) == (400, "validation-failed")
    finally:
        api.close()
