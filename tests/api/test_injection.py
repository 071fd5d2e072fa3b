"""Injection attempts through values and through identifiers (field names, aliases, order and filter keys,
variables, operation names) end in a 400 or an answer with no matching rows, and change nothing."""

from __future__ import annotations

import pytest
from api_support import Client, fetch

PAYLOADS = [
    "'; DROP TABLE employes; --",
    "' OR '1'='1",
    '" OR 1=1 --',
    "\\'; DELETE FROM employes; --",
    "%' OR 1=1 #",
    "Ana'/*",
    "1); DELETE FROM dept; --",
]


def unchanged(client: Client) -> None:
    assert fetch(client.url, "SELECT count(*) FROM employes") == [(5,)]
    assert fetch(client.url, "SELECT count(*) FROM dept") == [(3,)]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_values_are_bound_not_spliced(client: Client, payload: str) -> None:
    for op in ("_eq", "_like", "_ilike", "_neq"):
        rows = client.data(f"query($v: String) {{ employes(where: {{nom: {{{op}: $v}}}}) {{ id }} }}", {"v": payload})["employes"]
        assert rows == ([] if op != "_neq" else rows)
    rows = client.data("query($v: [String!]) { employes(where: {nom: {_in: $v}}) { id } }", {"v": [payload, "x"]})["employes"]
    assert rows == []
    status, _ = client.run("query($v: Int) { employes(where: {id: {_eq: $v}}) { id } }", {"v": payload})
    assert status == 400
    status, body = client.run(
        "mutation($v: String!) { update_employes(where: {nom: {_eq: $v}}, _set: {nom: $v}) { affected_rows } }", {"v": payload}
    )
    assert (status, body) == (200, {"data": {"update_employes": {"affected_rows": 0}}}) or (
        status,
        body["errors"][0]["extensions"]["code"],
    ) == (400, "invalid-value")
    unchanged(client)


@pytest.mark.parametrize(
    "document",
    [
        "{ employes { nom; DROP TABLE employes } }",
        '{ employes(order_by: {"nom; DROP TABLE dept": asc}) { id } }',
        "{ employes(order_by: {nom: asc; DROP TABLE dept}) { id } }",
        '{ employes(where: {"1=1) OR (1": {_eq: 1}}) { id } }',
        '{ employes(where: {nom: {_raw: "1=1"}}) { id } }',
        "{ employes { id, `nom` } }",
        "{ employes(where: {id: {_eq: 1}}) { id } } ; DELETE FROM employes",
        "query($w: employes_bool_exp) { employes(where: $w) { id } }",
    ],
)
def test_identifiers_only_come_from_the_catalog(client: Client, document: str) -> None:
    variables = {"w": {"nom; DROP TABLE dept": {"_eq": "x"}}}
    status, body = client.run(document, variables)
    assert status == 400, body
    assert client.last_statements == 0
    unchanged(client)


def test_order_by_variables_with_foreign_keys_are_refused(client: Client) -> None:
    status, _ = client.run(
        "query($o: [employes_order_by!]) { employes(order_by: $o) { id } }", {"o": [{"id); DROP TABLE dept; --": "asc"}]}
    )
    assert status == 400
    status, _ = client.run(
        "query($o: [employes_order_by!]) { employes(order_by: $o) { id } }", {"o": [{"id": "asc; DROP TABLE dept"}]}
    )
    assert status == 400
    unchanged(client)


def test_json_claim_lookalikes_in_request_values_are_plain_values(client: Client) -> None:
    rows = client.data('{ employes(where: {author: {_eq: "u1"}}) { id } }', role="admin")["employes"]
    assert len(rows) == 2
    status, _ = client.run('{ employes(where: {author: {_eq: {claim: "sub"}}}) { id } }', role="admin", sub="u1")
    assert status == 400
