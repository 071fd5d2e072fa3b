"""Compiled query plans (sluice.api.plans): a repeated query with other variables reuses its plan and answers
its own rows; roles and claims never share a plan's results; a catalog change retires the plans; a variable
used other than as a bound parameter (a limit, a pattern) keeps its query compiled each time."""

from __future__ import annotations

import pytest
from api_support import Client, execute_all

from sluice.api.plans import Probe, is_tagged, plan_key, tagged, untag
from sluice.api.principal import Principal

BY_PK = "query One($id: Int!) { employes_by_pk(id: $id) { id nom } }"
LIST = "query Dept($d: Int) { employes(where: {dept_id: {_eq: $d}}, order_by: {id: asc}) { id nom dept { nom } } }"


def test_a_repeated_query_reuses_its_plan_with_other_variables(client: Client) -> None:
    plans = client.api.plans
    assert client.data(BY_PK, {"id": 1}) == {"employes_by_pk": {"id": 1, "nom": "Ana"}}
    assert len(plans) == 1
    hits = plans.hits
    assert client.data(BY_PK, {"id": 3}) == {"employes_by_pk": {"id": 3, "nom": "Cid"}}
    assert client.data(BY_PK, {"id": 99}) == {"employes_by_pk": None}
    assert plans.hits == hits + 2 and len(plans) == 1
    assert client.last_statements == 1
    rows = client.data(LIST, {"d": 2})["employes"]
    assert [(r["id"], r["dept"]["nom"]) for r in rows] == [(3, "Ventes"), (5, "Ventes")]
    rows = client.data(LIST, {"d": 1})["employes"]
    assert [(r["id"], r["dept"]["nom"]) for r in rows] == [(1, "R&D"), (2, "R&D")]
    assert plans.hits == hits + 3
    assert client.data(LIST, {"d": None}) == {"employes": []}  # null: another shape (x = NULL is never true)


def test_roles_and_claims_never_share_a_plan(client: Client) -> None:
    query = "query All($d: Int) { employes(where: {dept_id: {_eq: $d}}, order_by: {id: asc}) { id } }"
    ids = lambda **who: [r["id"] for r in client.data(query, {"d": 1}, **who)["employes"]]  # noqa: E731
    assert ids() == [1, 2]
    assert ids(role="reader") == [1]  # actif only
    assert ids(role="author", sub="u1") == [1]
    assert ids(role="author", sub="u2") == [2]
    assert ids(role="author", sub="u1") == [1]
    assert ids() == [1, 2]
    assert len(client.api.plans) == 4


def test_a_catalog_change_retires_the_plans(client: Client) -> None:
    query = "query One($id: Int!) { employes_by_pk(id: $id) { id author } }"
    assert client.data(query, {"id": 1}) == {"employes_by_pk": {"id": 1, "author": "u1"}}
    assert len(client.api.plans) == 1
    execute_all(client.url, ["ALTER TABLE employes RENAME COLUMN author TO owner"])
    status, body = client.run(query, {"id": 3})  # the cached plan meets the new catalog: re-read, then refused
    assert status == 400 and body["errors"][0]["extensions"]["code"] == "validation-failed"
    assert len(client.api.plans) == 0
    renamed = "query One($id: Int!) { employes_by_pk(id: $id) { id owner } }"
    assert client.data(renamed, {"id": 3}) == {"employes_by_pk": {"id": 3, "owner": "u1"}}
    hits = client.api.plans.hits
    assert client.data(renamed, {"id": 2}) == {"employes_by_pk": {"id": 2, "owner": "u2"}}
    assert client.api.plans.hits == hits + 1


def test_a_variable_used_beyond_a_parameter_is_compiled_each_time(client: Client) -> None:
    limited = "query L($n: Int) { employes(order_by: {id: asc}, limit: $n) { id } }"
    assert [r["id"] for r in client.data(limited, {"n": 1})["employes"]] == [1]
    assert [r["id"] for r in client.data(limited, {"n": 3})["employes"]] == [1, 2, 3]
    like = "query P($p: String) { employes(where: {nom: {_like: $p}}, order_by: {id: asc}) { id } }"
    assert [r["id"] for r in client.data(like, {"p": "A%"})["employes"]] == [1]
    assert [r["id"] for r in client.data(like, {"p": "%a%"})["employes"]] == [1, 4, 5]
    assert len(client.api.plans) == 0
    assert client.error(limited, {"n": -1}) == (400, "validation-failed")


def test_tagged_values_taint_on_any_use() -> None:
    probe = Probe()
    values = tagged({"n": 5, "s": "ab", "f": 1.5, "b": True, "none": None}, probe)
    assert is_tagged(values["n"]) and is_tagged(values["s"]) and is_tagged(values["f"])
    assert values["b"] is True and values["none"] is None
    assert untag(values["s"]) == ("s", "ab") and not probe.tainted
    assert isinstance(values["n"], int) and values["n"] is not None and not probe.tainted
    for use in (
        lambda: min(values["n"], 3),
        lambda: f"{values['n']}",
        lambda: values["s"].lower(),
        lambda: str(values["s"]),
        lambda: {values["s"]: 1},
        lambda: values["f"] * 2,
        lambda: int(values["n"]),
        lambda: values["n"] == 5,
    ):
        probe.tainted = False
        use()
        assert probe.tainted


@pytest.mark.parametrize("claims", [{}, {"sub": "u1"}])
def test_the_key_holds_the_shape_not_the_values(claims: dict[str, str]) -> None:
    who = Principal(role="r", claims=claims)
    assert plan_key("q", None, 1, who, {"a": 1, "b": "x"}) == plan_key("q", None, 1, who, {"a": 2, "b": "y"})
    assert plan_key("q", None, 1, who, {"a": 1}) != plan_key("q", None, 1, who, {"a": None})
    assert plan_key("q", None, 1, who, {"a": True}) != plan_key("q", None, 1, who, {"a": False})
    assert plan_key("q", None, 1, who, {"a": [1]}) != plan_key("q", None, 1, who, {"a": [2]})
    assert plan_key("q", None, 1, who, {}) != plan_key("q", None, 2, who, {})
    assert plan_key("q", None, 1, who, {}) != plan_key("q", None, 1, Principal(role="r", claims={"sub": "u2"}), {})
