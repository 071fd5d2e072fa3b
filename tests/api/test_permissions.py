"""Role permissions applied inside the SQL: columns, row filters with claims, limits, insert presets and
checks, update and delete filters; the admin role has them all; other roles nothing unless granted."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from api_support import DDL, Client, execute_all, fetch, make_api


def test_column_permissions_in_queries(client: Client) -> None:
    rows = client.data("{ employes(order_by: {id: asc}) { id nom } }", role="reader")["employes"]
    assert [r["id"] for r in rows] == [1, 3]  # actif only, and the role's limit of 2
    assert client.error("{ employes { salaire } }", role="reader") == (403, "permission-denied")
    assert client.error("{ employes(where: {salaire: {_gt: 0}}) { id } }", role="reader") == (403, "permission-denied")
    assert client.error("{ employes(order_by: {salaire: asc}) { id } }", role="reader") == (403, "permission-denied")
    assert client.error("{ employes_aggregate { sum { salaire } } }", role="reader") == (403, "permission-denied")
    assert client.last_statements == 0


def test_row_filter_applies_to_by_pk_aggregates_and_relationships(client: Client) -> None:
    assert client.data("{ employes_by_pk(id: 2) { nom } }", role="reader") == {"employes_by_pk": None}
    (group,) = client.data("{ employes_aggregate { count } }", role="reader")["employes_aggregate"]
    assert group["count"] == 3
    depts = client.data("{ dept(order_by: {id: asc}) { id employes { id } } }", role="reader")["dept"]
    assert depts == [{"id": 1, "employes": [{"id": 1}]}, {"id": 2, "employes": [{"id": 3}, {"id": 5}]}, {"id": 3, "employes": []}]
    assert client.data('{ dept(where: {employes: {nom: {_eq: "Bob"}}}) { id } }', role="reader") == {"dept": []}


def test_claims_filter_rows(client: Client) -> None:
    rows = client.data("{ employes(order_by: {id: asc}) { id } }", role="author", sub="u1")["employes"]
    assert [r["id"] for r in rows] == [1, 3]
    assert client.error("{ employes { id } }", role="author") == (403, "claim-missing")
    # the related table's own filter applies too (dept 3 is hidden from authors)
    assert [d["id"] for d in client.data("{ dept { id } }", role="author", sub="u1")["dept"]] == [1, 2]


def test_a_role_without_a_grant_is_refused(client: Client) -> None:
    assert client.error("{ journal { msg } }", role="reader") == (403, "permission-denied")
    assert client.error("{ employes { id } }", role="stranger") == (403, "permission-denied")
    assert client.error('mutation { insert_dept_one(object: {id: 9, nom: "X"}) { id } }', role="reader") == (
        403,
        "permission-denied",
    )
    assert fetch(client.url, "SELECT count(*) FROM dept") == [(3,)]


def test_insert_presets_columns_and_check(client: Client) -> None:
    data = client.data(
        'mutation { insert_employes_one(object: {id: 50, nom: "Mine", dept_id: 1}) { id author } }', role="author", sub="u9"
    )
    assert data == {"insert_employes_one": {"id": 50, "author": "u9"}}
    assert fetch(client.url, "SELECT author FROM employes WHERE id = 50") == [("u9",)]
    # a column the role may not write
    assert client.error(
        'mutation { insert_employes_one(object: {id: 51, nom: "X", salaire: "1"}) { id } }', role="author", sub="u9"
    ) == (403, "permission-denied")
    # the check refuses dept 3, and the row is not left behind
    status, code = client.error(
        'mutation { insert_employes(objects: [{id: 52, nom: "A"}, {id: 53, nom: "B", dept_id: 3}]) { affected_rows } }',
        role="author",
        sub="u9",
    )
    assert (status, code) == (403, "permission-denied")
    assert fetch(client.url, "SELECT count(*) FROM employes WHERE id IN (52, 53)") == [(0,)]


def test_update_and_delete_only_touch_the_roles_rows(client: Client) -> None:
    data = client.data(
        'mutation { update_employes(where: {}, _set: {nom: "Renamed"}) { affected_rows } }', role="author", sub="u2"
    )
    assert client.error("{ employes { salaire } }", role="author", sub="u2") == (403, "permission-denied")
    assert data["update_employes"]["affected_rows"] == 2
    assert fetch(client.url, "SELECT id FROM employes WHERE nom = 'Renamed' ORDER BY id") == [(2,), (5,)]
    assert client.error(
        'mutation { update_employes(where: {}, _set: {author: "u2"}) { affected_rows } }', role="author", sub="u2"
    ) == (403, "permission-denied")
    data = client.data("mutation { delete_employes_by_pk(id: 1) { id } }", role="author", sub="u2")
    assert data == {"delete_employes_by_pk": None}
    data = client.data("mutation { delete_employes(where: {id: {_gt: 0}}) { affected_rows } }", role="author", sub="u2")
    assert data["delete_employes"]["affected_rows"] == 2
    assert fetch(client.url, "SELECT id FROM employes ORDER BY id") == [(1,), (3,), (4,)]


def test_returning_obeys_select_permissions(client: Client) -> None:
    document = 'mutation { insert_employes_one(object: {id: 60, nom: "X", dept_id: 1}) { %s } }'
    assert client.error(document % "salaire", role="author", sub="u1") == (403, "permission-denied")
    assert fetch(client.url, "SELECT count(*) FROM employes WHERE id = 60") == [(0,)]
    assert client.data(document % "id nom", role="author", sub="u1") == {"insert_employes_one": {"id": 60, "nom": "X"}}


def test_a_null_fails_a_check(client: Client) -> None:
    """``dept_id <> 3`` is unknown for a null dept_id: the check counts it as failed (SQL's three values)."""
    document = 'mutation { insert_employes_one(object: {id: 61, nom: "X"}) { id } }'
    assert client.error(document, role="author", sub="u1") == (403, "permission-denied")
    assert fetch(client.url, "SELECT count(*) FROM employes WHERE id = 61") == [(0,)]


BAD_ROLES = {
    "anon": {"employes": {"select": {"columns": ["id", "nocol"], "filter": {"nomm": {"_eq": "Ana"}}}}, "dept": {"select": {}}}
}


def test_a_permission_naming_a_missing_column_is_logged_and_refused_as_a_server_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'hr.db'}"
    execute_all(url, DDL)
    with caplog.at_level(logging.ERROR, logger="sluice.api"):
        api = make_api({"sources": [{"connection": "hr", "tables": ["*"]}], "roles": BAD_ROLES}, {"hr": url})
    try:
        logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any("role 'anon' select on 'employes': columns names 'nocol'" in m for m in logged), logged
        assert any("filter names 'nomm'" in m and "Did you mean 'nom'?" in m for m in logged), logged
        client = Client(api, url)
        status, body = client.run("{ employes { id } }", role="anon")
        assert status == 500, body
        error = body["errors"][0]
        assert error["extensions"]["code"] == "bad-permission"
        assert "role 'anon'" in error["message"] and "employes" in error["message"]
        assert "nomm" not in error["message"] and "Ana" not in error["message"]  # the settings stay in the log
        assert client.data("{ dept { id } }", role="anon")["dept"]  # the role's other permissions still work
    finally:
        api.close()


def test_a_column_gone_from_a_columns_list_only_leaves_that_column_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'hr.db'}"
    execute_all(url, DDL)
    roles = {"anon": {"employes": {"select": {"columns": ["id", "nom", "email"]}}}}  # email was dropped at the source
    with caplog.at_level(logging.ERROR, logger="sluice.api"):
        api = make_api({"sources": [{"connection": "hr", "tables": ["*"]}], "roles": roles}, {"hr": url})
    try:
        assert any("columns names 'email'" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
        client = Client(api, url)
        assert client.data("{ employes(order_by: {id: asc}, limit: 1) { id nom } }", role="anon") == {
            "employes": [{"id": 1, "nom": "Ana"}]
        }
        assert client.error("{ employes { salaire } }", role="anon") == (403, "permission-denied")
    finally:
        api.close()


CLAIM_ROLES = {
    **{
        "author": {
            "employes": {
                "select": {"filter": {"author": {"_eq": {"claim": "sub"}}}},
                "insert": {"set": {"author": {"claim": "sub"}}},
            }
        }
    },
    "team": {"employes": {"select": {"filter": {"author": {"_in": {"claim": "authors"}}}}}},
    "picked": {
        "employes": {"select": {"filter": {"_or": [{"nom": {"_eq": {"claim": "nom"}}}, {"id": {"_in": {"claim": "ids"}}}]}}}
    },
}


def test_claims_of_the_wrong_shape_are_403_never_a_500_or_a_loose_match(engine: str) -> None:
    api = make_api({"sources": [{"connection": "hr", "tables": ["*"]}], "roles": CLAIM_ROLES}, {"hr": engine})
    client = Client(api, engine)
    try:
        query = "{ employes(order_by: {id: asc}) { id } }"
        assert client.error(query, role="author", sub={"a": 1}) == (403, "claim-invalid")
        assert client.error(query, role="author", sub=["u1"]) == (403, "claim-invalid")  # not silently 'u1'
        assert client.error(query, role="author", sub=[["u1"]]) == (403, "claim-invalid")
        assert client.data(query, role="author", sub="u1") == {"employes": [{"id": 1}, {"id": 3}]}
        insert = 'mutation { insert_employes_one(object: {id: 70, nom: "Z"}) { id } }'
        assert client.error(insert, role="author", sub=["u1"]) == (403, "claim-invalid")
        assert fetch(engine, "SELECT count(*) FROM employes WHERE id = 70") == [(0,)]
        assert client.data(query, role="team", sub="x", authors=["u1", "u3"]) == {"employes": [{"id": 1}, {"id": 3}, {"id": 4}]}
        assert client.data(query, role="team", sub="x", authors="u2") == {"employes": [{"id": 2}, {"id": 5}]}
        assert client.error(query, role="team", sub="x", authors={"u": 1}) == (403, "claim-invalid")
        # claims take the column's type (Hasura's session variables): a number for a text column, text for numbers
        assert client.data(query, role="picked", sub="x", nom=5, ids=["1", "3"]) == {"employes": [{"id": 1}, {"id": 3}]}
        assert client.data(query, role="picked", sub="x", nom="Eva", ids=[]) == {"employes": [{"id": 5}]}
        assert client.error(query, role="picked", sub="x", nom=True, ids=[]) == (403, "claim-invalid")
        assert client.error(query, role="picked", sub="x", nom="Eva", ids=["one"]) == (403, "claim-invalid")
    finally:
        api.close()
