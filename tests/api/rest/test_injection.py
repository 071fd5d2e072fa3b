"""Injection attempts through values and through identifiers (select lists, aliases, order, filter keys,
on_conflict, columns, body keys) answer 400 or no rows, and change nothing."""

from __future__ import annotations

import pytest

from rest.blog import Served

PAYLOADS = [
    "1; DROP TABLE authors; --",
    "1' OR '1'='1",
    '1" OR "1"="1',
    "1` OR 1=1 -- ",
    "x) OR (1=1",
    "'; DELETE FROM authors; --",
    "%' OR 1=1 --",
    "\\'; DROP TABLE authors; --",
]
IDENTIFIERS = [
    'id"; DROP TABLE authors; --',
    "id`; DROP TABLE authors; --",
    "id) FROM authors; DROP TABLE authors; --",
    "(select 1)",
    "1=1",
]


def untouched(served: Served) -> None:
    assert served.rows("SELECT count(*) FROM authors")[0][0] == 3
    assert served.rows("SELECT name FROM authors WHERE id = 1") == [("Ada",)]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_values_are_bound_never_spliced(served: Served, payload: str) -> None:
    for query in (
        {"name": f"eq.{payload}"},
        {"name": f"like.{payload}"},
        {"name": f"ilike.*{payload}*"},
        {"name": f"in.({payload},x)"},
        {"or": f"(name.eq.{payload},id.eq.0)"},
        {"id": f"eq.{payload}"},
    ):
        answer = served.client.get("/rest/authors", params=query)
        assert answer.status_code == 400 or answer.json() == [], (query, answer.text)
    patched = served.client.patch("/rest/authors", params={"name": f"eq.{payload}"}, json={"name": "pwned"})
    assert patched.status_code in (204, 400)
    stored = served.client.post("/rest/authors?select=name", json={"name": payload}, headers={"Prefer": "return=representation"})
    assert stored.status_code == 201 and stored.json() == [{"name": payload}]
    served.client.delete("/rest/authors", params={"name": f"eq.{payload}"})
    untouched(served)


@pytest.mark.parametrize("name", IDENTIFIERS)
def test_identifiers_never_reach_the_sql(served: Served, name: str) -> None:
    attempts = [
        ("get", {"select": name}),
        ("get", {"select": f"alias:{name}"}),
        ("get", {"select": f'"{name}"'}),
        ("get", {"select": f"{name}(id)"}),
        ("get", {"order": name}),
        ("get", {"order": f'"{name}".desc'}),
        ("get", {name: "eq.1"}),
        ("get", {"or": f"({name}.eq.1)"}),
        ("get", {f"{name}.id": "eq.1"}),
        ("post", {"on_conflict": name}),
        ("post", {"columns": name}),
    ]
    for method, params in attempts:
        if method == "get":
            answer = served.client.get("/rest/authors", params=params)
        else:
            answer = served.client.post(
                "/rest/authors", params=params, json={"name": "x"}, headers={"Prefer": "resolution=merge-duplicates"}
            )
        assert answer.status_code in (400, 404), (params, answer.status_code, answer.text)
        assert "t0." not in answer.text and "INSERT INTO" not in answer.text.upper()  # the name may be echoed, never SQL
    for body in ({name: "x"}, {"name": "x", name: 1}):
        assert served.client.post("/rest/authors", json=body).status_code == 400
        assert served.client.patch("/rest/authors?id=eq.1", json=body).status_code == 400
    assert served.client.get(f"/rest/{name}").status_code == 404
    untouched(served)


def test_error_bodies_carry_no_sql(served: Served) -> None:
    for path in ("/rest/authors?id=eq.x", "/rest/authors?select=nope", "/rest/authors?order=nope.desc"):
        text = served.client.get(path).text.upper()
        assert "SELECT" not in text and "FROM" not in text and "WHERE" not in text
    duplicate = served.client.post("/rest/authors", json={"name": "Dup", "email": "ada@x.org"}).text.upper()
    assert "INSERT" not in duplicate and "DUPLICATE KEY" not in duplicate and "UNIQUE CONSTRAINT" not in duplicate
