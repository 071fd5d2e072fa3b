"""Queries against PostgreSQL, MariaDB and SQLite: every filter operator, ordering, both paginations,
rows by key, aggregates, relationships in both directions, and one SQL statement per request."""

from __future__ import annotations

from decimal import Decimal

import pytest
from api_support import Client


def names(rows: list[dict[str, object]]) -> list[object]:
    return [row["nom"] for row in rows]


def where(client: Client, condition: str) -> list[object]:
    rows = client.data(f"{{ employes(where: {condition}, order_by: {{id: asc}}) {{ nom }} }}")["employes"]
    assert client.last_statements == 1
    return names(rows)


def test_every_filter_operator(client: Client) -> None:
    assert where(client, '{nom: {_eq: "Bob"}}') == ["Bob"]
    assert where(client, '{nom: {_neq: "Bob"}}') == ["Ana", "Cid", "Dan", "Eva"]
    assert where(client, '{salaire: {_gt: "4000"}}') == ["Ana"]
    assert where(client, '{salaire: {_gte: "4000"}}') == ["Ana", "Bob", "Cid"]
    assert where(client, '{salaire: {_lt: "4000"}}') == ["Eva"]
    assert where(client, "{salaire: {_lte: 4000}}") == ["Bob", "Cid", "Eva"]
    assert where(client, "{id: {_in: [2, 4, 99]}}") == ["Bob", "Dan"]
    assert where(client, "{id: {_in: []}}") == []
    assert where(client, "{id: {_nin: [1, 2]}}") == ["Cid", "Dan", "Eva"]
    assert where(client, '{nom: {_like: "%a%"}}') == ["Ana", "Dan", "Eva"]
    assert where(client, '{nom: {_like: "a%"}}') == []
    assert where(client, '{nom: {_ilike: "a%"}}') == ["Ana"]
    assert where(client, '{nom: {_like: "_o_"}}') == ["Bob"]
    assert where(client, "{salaire: {_is_null: true}}") == ["Dan"]
    assert where(client, "{salaire: {_is_null: false}}") == ["Ana", "Bob", "Cid", "Eva"]
    assert where(client, "{actif: {_eq: true}}") == ["Ana", "Cid", "Eva"]
    assert where(client, '{embauche: {_gte: "2021-01-01"}}') == ["Bob", "Eva"]
    assert where(client, '{_and: [{actif: {_eq: true}}, {salaire: {_lt: "4500"}}]}') == ["Cid", "Eva"]
    assert where(client, "{_or: [{id: {_eq: 1}}, {id: {_eq: 4}}]}") == ["Ana", "Dan"]
    assert where(client, "{_not: {id: {_gt: 2}}}") == ["Ana", "Bob"]
    assert where(client, '{dept: {nom: {_eq: "Ventes"}}}') == ["Cid", "Eva"]


def test_filter_through_an_array_relationship(client: Client) -> None:
    rows = client.data('{ dept(where: {employes: {nom: {_eq: "Eva"}}}) { nom } }')["dept"]
    assert names(rows) == ["Ventes"]


def test_ordering_limit_and_offset(client: Client) -> None:
    rows = client.data("{ employes(order_by: [{salaire: desc}, {nom: asc}]) { nom } }")["employes"]
    assert names(rows) == ["Dan", "Ana", "Bob", "Cid", "Eva"]  # nulls first when descending (PostgreSQL's default)
    rows = client.data("{ employes(order_by: [{salaire: desc_nulls_last}, {nom: desc}], limit: 2, offset: 1) { nom } }")[
        "employes"
    ]
    assert names(rows) == ["Cid", "Bob"]
    rows = client.data("{ employes(order_by: [{salaire: asc_nulls_first}, {id: asc}], limit: 2) { nom } }")["employes"]
    assert names(rows) == ["Dan", "Eva"]
    assert client.last_statements == 1


def test_cursor_pages_are_stable_on_a_non_unique_order(client: Client) -> None:
    query = (
        "query($after: String) { employes_page(first: 2, after: $after, order_by: {salaire: asc}) "
        "{ nodes { id } page_info { end_cursor has_next_page } } }"
    )
    seen: list[object] = []
    after = None
    for _ in range(4):
        page = client.data(query, {"after": after})["employes_page"]
        assert client.last_statements == 1
        seen += [node["id"] for node in page["nodes"]]
        after = page["page_info"]["end_cursor"]
        if not page["page_info"]["has_next_page"]:
            break
    # salaire ties (Bob and Cid at 4000) are broken by the key; the null comes last ascending
    assert seen == [5, 2, 3, 1, 4]


def test_a_cursor_from_another_order_is_refused(client: Client) -> None:
    page = client.data("{ employes_page(first: 1, order_by: {nom: asc}) { page_info { end_cursor } } }")["employes_page"]
    cursor = page["page_info"]["end_cursor"]
    assert client.error(
        "query($c: String) { employes_page(after: $c, order_by: {id: asc}) { nodes { id } } }", {"c": cursor}
    ) == (400, "invalid-cursor")
    assert client.error('{ employes_page(after: "bm90IGpzb24") { nodes { id } } }') == (400, "invalid-cursor")


def test_row_by_key_and_missing_row(client: Client) -> None:
    data = client.data("{ a: employes_by_pk(id: 3) { nom dept { nom } } b: employes_by_pk(id: 42) { nom } }")
    assert data == {"a": {"nom": "Cid", "dept": {"nom": "Ventes"}}, "b": None}
    assert client.last_statements == 1


def test_aggregates_with_and_without_group_by(client: Client) -> None:
    data = client.data(
        "{ all: employes_aggregate { count sum { salaire } avg { salaire } min { salaire nom } max { embauche } }"
        "  by: employes_aggregate(group_by: [dept_id], where: {salaire: {_is_null: false}}) "
        "{ keys { dept_id } count avg { salaire } } }"
    )
    assert client.last_statements == 1
    (total,) = data["all"]
    assert total["count"] == 5
    assert Decimal(total["sum"]["salaire"]) == Decimal("16000.75")
    assert Decimal(total["avg"]["salaire"]) == Decimal("4000.1875")
    assert Decimal(str(total["min"]["salaire"])) == Decimal("3000.25")
    assert total["min"]["nom"] == "Ana"
    assert total["max"]["embauche"].startswith("2022-11-11")
    groups = {g["keys"]["dept_id"]: (g["count"], Decimal(g["avg"]["salaire"])) for g in data["by"]}
    assert groups == {1: (2, Decimal("4500.25")), 2: (2, Decimal("3500.125"))}


def test_relationships_in_both_directions_nested(client: Client) -> None:
    data = client.data("{ dept(order_by: {id: asc}) { nom employes(order_by: {nom: desc}, limit: 1) { nom dept { id } } } }")
    assert client.last_statements == 1
    assert data["dept"] == [
        {"nom": "R&D", "employes": [{"nom": "Bob", "dept": {"id": 1}}]},
        {"nom": "Ventes", "employes": [{"nom": "Eva", "dept": {"id": 2}}]},
        {"nom": "Vide", "employes": []},
    ]


def test_several_root_fields_fragments_aliases_and_typename(client: Client) -> None:
    data = client.data(
        "fragment F on employes { nom __typename } "
        "query Q($n: String!) { one: employes(where: {nom: {_eq: $n}}) { ...F } "
        "two: dept(limit: 1, order_by: {id: asc}) { ... on dept { nom } } "
        "__typename }",
        {"n": "Ana"},
    )
    assert data == {"one": [{"nom": "Ana", "__typename": "employes"}], "two": [{"nom": "R&D"}], "__typename": "Query"}
    assert client.last_statements == 1


def test_exact_values_and_scalars(client: Client) -> None:
    (row,) = client.data("{ employes(where: {id: {_eq: 1}}) { salaire actif embauche } }")["employes"]
    assert isinstance(row["salaire"], str) and Decimal(row["salaire"]) == Decimal("5000.5")
    assert row["actif"] is True
    assert row["embauche"].startswith("2020-01-15")


def test_views_and_keyless_tables_are_read_only(client: Client) -> None:
    assert names(client.data("{ employes_actifs(order_by: {id: asc}) { nom } }")["employes_actifs"]) == ["Ana", "Cid", "Eva"]
    assert client.data("{ journal { msg } }")["journal"] == [{"msg": "hello"}]
    fields = client.data("{ __schema { mutationType { fields { name } } } }")["__schema"]["mutationType"]["fields"]
    mutations = {f["name"] for f in fields}
    assert "insert_employes" in mutations
    assert not {m for m in mutations if "journal" in m or "employes_actifs" in m}
    assert "employes_actifs_by_pk" not in {
        f["name"] for f in client.data("{ __schema { queryType { fields { name } } } }")["__schema"]["queryType"]["fields"]
    }


@pytest.mark.parametrize(
    "document",
    [
        "{ employes { nope } }",
        "{ nope }",
        '{ employes(where: {id: {_eq: "x"}}) { id } }',
        "{ employes(limit: -1) { id } }",
        "{ employes { id }",
        "subscription { employes { id } }",
    ],
)
def test_client_mistakes_are_400_without_sql(client: Client, document: str) -> None:
    status, body = client.run(document)
    assert status == 400, body
    assert "select " not in str(body).lower()
    assert client.last_statements == 0
