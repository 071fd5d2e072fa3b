"""Introspection answers from the part of the schema a role may use (sluice.api.role_schema): tables, columns,
relationships, aggregates and mutations it lacks are absent, while requests are still validated against the
full schema (a forbidden column is a 403 naming it, not an unknown field)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import DDL, ROLES, Client, execute_all, make_api
from graphql import build_client_schema, get_introspection_query

ROLE_SETS = {
    **ROLES,
    "counter": {"employes": {"select": {"columns": ["id"], "aggregate": False}}},
    "nobody_reads": {"dept": {"insert": {}}},
}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    url = f"sqlite:///{tmp_path / 'hr.db'}"
    execute_all(url, DDL)
    api = make_api({"sources": [{"connection": "hr", "tables": ["*"]}], "roles": ROLE_SETS}, {"hr": url})
    try:
        yield Client(api, url)
    finally:
        api.close()


def fields(client: Client, type_name: str, role: str, kind: str = "fields") -> set[str] | None:
    found = client.data(f'{{ __type(name: "{type_name}") {{ {kind} {{ name }} }} }}', role=role)["__type"]
    return None if found is None else {f["name"] for f in found[kind] or []}


def roots(client: Client, role: str) -> dict[str, set[str]]:
    schema = client.data(
        "{ __schema { queryType { fields { name } } mutationType { fields { name } } subscriptionType { name } } }",
        role=role,
    )["__schema"]
    return {
        "query": {f["name"] for f in schema["queryType"]["fields"]},
        "mutation": {f["name"] for f in (schema["mutationType"] or {"fields": []})["fields"]},
    }


def test_a_reader_sees_its_tables_and_columns_only(client: Client) -> None:
    seen = roots(client, "reader")
    assert seen["query"] == {
        "employes",
        "employes_page",
        "employes_by_pk",
        "employes_aggregate",
        "dept",
        "dept_page",
        "dept_by_pk",
        "dept_aggregate",
    }
    assert seen["mutation"] == set()
    assert fields(client, "employes", "reader") == {"id", "nom", "dept_id", "dept"}  # no salaire, actif, author
    assert fields(client, "employes_bool_exp", "reader", "inputFields") == {"id", "nom", "dept_id", "dept", "_and", "_or", "_not"}
    assert fields(client, "employes_select_column", "reader", "enumValues") == {"id", "nom", "dept_id"}
    assert fields(client, "journal", "reader") is None  # no permission: the type is not there at all
    assert fields(client, "employes_insert_input", "reader", "inputFields") is None
    # validation still runs on the full schema: the forbidden column is named in a 403
    assert client.error("{ employes { salaire } }", role="reader") == (403, "permission-denied")


def test_mutations_follow_each_operation_and_its_columns(client: Client) -> None:
    seen = roots(client, "author")
    assert {"insert_employes", "insert_employes_one", "update_employes", "update_employes_by_pk"} <= seen["mutation"]
    assert {"delete_employes", "delete_employes_by_pk"} <= seen["mutation"]
    assert not {m for m in seen["mutation"] if "dept" in m or "journal" in m}
    assert fields(client, "employes_insert_input", "author", "inputFields") == {"id", "nom", "dept_id"}
    assert fields(client, "employes_set_input", "author", "inputFields") == {"nom", "salaire"}
    assert fields(client, "employes_update_column", "author", "enumValues") == {"nom", "salaire"}


def test_aggregates_upserts_and_a_role_without_reads(client: Client) -> None:
    assert roots(client, "counter")["query"] == {"employes", "employes_page", "employes_by_pk"}
    assert fields(client, "employes", "counter") == {"id"}  # the dept relationship needs dept's select
    seen = roots(client, "nobody_reads")
    # insert_dept_one answers a dept, which this role may not read: only the insert with affected_rows is left
    assert seen["query"] == {"_empty"} and seen["mutation"] == {"insert_dept"}
    assert fields(client, "dept_mutation_response", "nobody_reads") == {"affected_rows"}
    insert = client.data('{ __type(name: "Mutation") { fields { name args { name } } } }', role="nobody_reads")["__type"][
        "fields"
    ]
    assert all("on_conflict" not in {a["name"] for a in f["args"]} for f in insert)  # upsert needs update


def test_graphiqls_introspection_query_builds_a_valid_client_schema_for_each_role(client: Client) -> None:
    for role in ("admin", "reader", "author", "counter", "nobody_reads", "anon"):
        data: Any = client.data(get_introspection_query(), role=role)
        schema = build_client_schema(data)  # raises when the answer is not a consistent schema
        assert schema.query_type is not None
    full = build_client_schema(client.data(get_introspection_query(), role="admin"))
    assert "salaire" in full.get_type("employes").fields  # type: ignore[union-attr]
