"""A new user's mistakes answered as 400s with a code, and exact numbers, over GraphQL and REST on PostgreSQL
and MariaDB: documents and variables nested too deep, NUL characters, invalid regular expressions, values out
of range; REST's single-object and CSV answers keep numeric digits and scale; a bug is a 500 in the documented
``{"errors": [...]}`` shape."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import execute_all, served_api

from sluice.api import http as api_http
from sluice.api.execute import run_live
from sluice.api.gate import DataApiError
from sluice.api.nesting import MAX_NESTING, document_depth, value_depth
from sluice.api.principal import Principal
from sluice.api.service import DataApi

BIG = "12345678901234567890.0123456789"
PG_DDL = ["CREATE TABLE amounts (id INTEGER PRIMARY KEY, big NUMERIC(38,10), price NUMERIC(10,2), label VARCHAR(40))"]
MYSQL_DDL = ["CREATE TABLE amounts (id INTEGER PRIMARY KEY, big DECIMAL(38,10), price DECIMAL(10,2), label VARCHAR(40))"]
SEED = [f"INSERT INTO amounts VALUES (1, {BIG}, 30.00, 'un'), (2, 1.5, 0.10, 'deux')"]


class Stack:
    """GraphQL and REST of one data API over the ``amounts`` table, served by uvicorn."""

    def __init__(self, api: DataApi, client: httpx.Client) -> None:
        self.api = api
        self.client = client

    def graphql(self, body: Any) -> tuple[int, Any]:
        answer = self.client.post("/graphql", json=body)
        return answer.status_code, answer.json()


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres), pytest.param("mysql", marks=pytest.mark.mysql)])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    if request.param == "postgresql":
        url, ddl = str(request.getfixturevalue("pg_db_url")), PG_DDL
    else:
        url, ddl = str(request.getfixturevalue("mysql_db_url")), MYSQL_DDL
    execute_all(url, [*ddl, *SEED])
    with served_api({"sources": [{"connection": "db", "tables": ["*"]}]}, {"db": url}) as (api, client):
        yield Stack(api, client)


def code_of(body: Any) -> str:
    assert set(body) == {"errors"}, body
    [error] = body["errors"]
    assert isinstance(error["message"], str) and error["message"]
    return str(error["extensions"]["code"])


# --- REST numbers -----------------------------------------------------------------------------------------


def test_rest_object_and_csv_keep_numeric_digits_and_scale(stack: Stack) -> None:
    listed = stack.client.get("/rest/amounts?id=eq.1")
    assert json.loads(listed.content, parse_float=Decimal)[0]["big"] == Decimal(BIG)
    for answer in (
        stack.client.get("/rest/amounts/1"),
        stack.client.get("/rest/amounts?id=eq.1", headers={"accept": "application/vnd.pgrst.object+json"}),
    ):
        assert answer.status_code == 200, answer.text
        row = json.loads(answer.content, parse_float=Decimal)
        assert row["big"] == Decimal(BIG) and row["price"] == Decimal("30.00")
        assert BIG in answer.text and "e+19" not in answer.text
    answer = stack.client.get("/rest/amounts?order=id&select=id,big,price", headers={"accept": "text/csv"})
    assert answer.status_code == 200, answer.text
    assert answer.text.splitlines() == ["id,big,price", f"1,{BIG},30.00", "2,1.5000000000,0.10"]


# --- depth --------------------------------------------------------------------------------------------------


def test_documents_and_variables_nested_too_deep_are_400(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    selection = "{ amounts { " + "a { " * 150 + "id" + " }" * 150 + " } }"
    conjunction = "{ amounts(where: " + "{_and: [" * 200 + "{id: {_eq: 1}}" + "]}" * 200 + ") { id } }"
    query = "query($w: amounts_bool_exp) { amounts(where: $w) { id } }"
    deep = '{"_and": [' * 900 + '{"id": {"_eq": 1}}' + "]}" * 900  # JSON text: too deep for json.dumps here
    for body in ({"query": selection}, {"query": conjunction}):
        status, answer = stack.graphql(body)
        assert (status, code_of(answer)) == (400, "query-too-deep"), answer
    raw = '{"query": ' + json.dumps(query) + ', "variables": {"w": ' + deep + "}}"
    answer = stack.client.post("/graphql", content=raw, headers={"content-type": "application/json"})
    assert (answer.status_code, code_of(answer.json())) == (400, "query-too-deep")
    answer = stack.client.get("/graphql", params={"query": query, "variables": '{"w": ' + deep + "}"})
    assert (answer.status_code, code_of(answer.json())) == (400, "query-too-deep")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text


def test_nesting_under_the_bound_still_runs(stack: Stack) -> None:
    levels = MAX_NESTING // 2 - 4  # two brackets per level, the operation's own braces and parentheses around
    conjunction = "{ amounts(where: " + "{_and: [" * levels + "{id: {_eq: 1}}" + "]}" * levels + ") { id } }"
    assert document_depth(conjunction) <= MAX_NESTING
    status, answer = stack.graphql({"query": conjunction})
    assert (status, answer) == (200, {"data": {"amounts": [{"id": 1}]}})
    deep: Any = {"id": {"_eq": 2}}
    for _ in range(levels):
        deep = {"_and": [deep]}
    query = "query($w: amounts_bool_exp) { amounts(where: $w) { id } }"
    status, answer = stack.graphql({"query": query, "variables": {"w": deep}})
    assert (status, answer) == (200, {"data": {"amounts": [{"id": 2}]}})


def test_depth_scans_skip_strings_and_comments() -> None:
    assert document_depth('{ a(b: "{{{{[[((") { c { d } } # {{{{\n }') == 3
    assert document_depth('{ a(b: """ {{{ \\""" {{ """) }') == 2
    assert document_depth("") == 0
    assert value_depth({"a": [1, {"b": "{{{{"}]}) == 3
    assert value_depth(5) == 0
    nested: Any = []
    for _ in range(5000):
        nested = [nested]
    assert value_depth(nested, limit=10) == 11


# --- bad values ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_nul_in_a_graphql_string_is_400_on_postgresql(stack: Stack) -> None:
    status, answer = stack.graphql({"query": '{ amounts(where: {label: {_eq: "\\u0000"}}) { id } }'})
    assert (status, code_of(answer)) == (400, "invalid-value")
    assert "NUL" in answer["errors"][0]["message"]
    query = "query($l: String) { amounts(where: {label: {_eq: $l}}) { id } }"
    status, answer = stack.graphql({"query": query, "variables": {"l": "a\u0000b"}})
    assert (status, code_of(answer)) == (400, "invalid-value")
    subscription = "subscription($l: String) { amounts(where: {label: {_eq: $l}}) { id } }"
    with pytest.raises(DataApiError) as refused:
        run_live(stack.api, subscription, {"l": "\u0000"}, None, Principal("admin"))
    assert (refused.value.status, refused.value.code) == (400, "invalid-value")
    answer = stack.client.get("/rest/amounts", params={"label": "eq.\u0000"})
    assert (answer.status_code, answer.json()["code"]) == (400, "SLR522")


def test_values_out_of_range_are_400(stack: Stack) -> None:
    mutation = 'mutation { insert_amounts_one(object: {id: 9, price: "123456789012"}) { id } }'
    status, answer = stack.graphql({"query": mutation})
    assert (status, code_of(answer)) == (400, "invalid-value")
    answer = stack.client.post("/rest/amounts", json={"id": 9, "price": 123456789012})
    assert (answer.status_code, answer.json()["code"]) == (400, "SLR522")


def test_an_invalid_regular_expression_is_400_and_says_so(stack: Stack) -> None:
    answer = stack.client.get("/rest/amounts?label=match.(((")
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "SLR522"
    assert answer.json()["message"] == "the regular expression is invalid"


def test_more_values_than_a_statement_takes_is_a_400_not_an_outage(stack: Stack) -> None:
    query = "query($ids: [Int!]!) { amounts(where: {id: {_in: $ids}}) { id } }"
    status, answer = stack.graphql({"query": query, "variables": {"ids": list(range(66_000))}})
    if stack.api.databases["db"].scheme == "postgresql":  # libpq sends at most 65,535 parameters
        assert (status, code_of(answer)) == (400, "too-many-values"), answer
        assert "65,535" in answer["errors"][0]["message"]
    else:  # PyMySQL writes the values into the statement's text: no such bound
        assert status == 200 and sorted(r["id"] for r in answer["data"]["amounts"]) == [1, 2]


# --- bugs ---------------------------------------------------------------------------------------------------


def test_a_bug_is_a_500_in_the_graphql_error_shape(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(api_http, "run_request", broken)
    answer = stack.client.post("/graphql", json={"query": "{ amounts { id } }"})
    assert answer.status_code == 500
    assert code_of(answer.json()) == "internal"
    assert "secret" not in answer.text
