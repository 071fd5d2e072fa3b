"""POST (one, many, upsert), PATCH and DELETE on each database, with Prefer: return and resolution, the key
shorthand (seed 001's PUT /articles/{id}), role permissions with claims, and constraint errors."""

from __future__ import annotations

from rest.blog import Served

REPRESENT = {"Prefer": "return=representation"}


def test_post_one_object_minimal_then_representation(served: Served) -> None:
    minimal = served.client.post("/rest/authors", json={"name": "Dana", "email": "dana@x.org"})
    assert minimal.status_code == 201 and minimal.content == b""
    assert minimal.headers["content-range"] == "0-0/*"
    shown = served.client.post("/rest/authors?select=name,active", json={"name": "Eve"}, headers=REPRESENT)
    assert shown.status_code == 201 and shown.json() == [{"name": "Eve", "active": True}]
    assert shown.headers["preference-applied"] == "return=representation"
    assert served.rows("SELECT name FROM authors WHERE email = 'dana@x.org'") == [("Dana",)]


def test_post_an_array_with_missing_keys_as_null_or_default(served: Served) -> None:
    rows = [{"name": "F1", "active": False}, {"name": "F2"}]
    made = served.client.post("/rest/authors?select=name,active&order=name", json=rows, headers=REPRESENT)
    assert made.status_code == 201
    assert sorted((r["name"], r["active"]) for r in made.json()) == [("F1", False), ("F2", None)]
    if served.db.dialect.name != "sqlite":
        defaulted = served.client.post(
            "/rest/authors?select=name,active",
            json=[{"name": "G1", "active": False}, {"name": "G2"}],
            headers={"Prefer": "return=representation, missing=default"},
        )
        assert sorted((r["name"], r["active"]) for r in defaulted.json()) == [("G1", False), ("G2", True)]


def test_post_with_embedding_in_the_answer(served: Served) -> None:
    made = served.client.post(
        "/rest/articles?select=titre,author(name)", json={"titre": "New", "author_id": 2}, headers=REPRESENT
    )
    assert made.status_code == 201 and made.json() == [{"titre": "New", "author": {"name": "Brice"}}]


def test_upsert_merge_and_ignore_duplicates(served: Served) -> None:
    merge = served.client.post(
        "/rest/authors?select=id,name",
        json=[{"id": 1, "name": "Ada Lovelace"}, {"id": 50, "name": "New"}],
        headers={"Prefer": "return=representation,resolution=merge-duplicates"},
    )
    assert merge.status_code == 201, merge.text
    assert sorted((r["id"], r["name"]) for r in merge.json()) == [(1, "Ada Lovelace"), (50, "New")]
    assert merge.headers["preference-applied"] == "return=representation, resolution=merge-duplicates"
    ignore = served.client.post(
        "/rest/authors?select=id,name",
        json=[{"id": 2, "name": "Ignored"}],
        headers={"Prefer": "return=representation,resolution=ignore-duplicates"},
    )
    assert ignore.status_code == 201 and ignore.json() == []
    assert served.rows("SELECT name FROM authors WHERE id = 2") == [("Brice",)]
    on_email = served.client.post(
        "/rest/authors?on_conflict=email&select=id,name",
        json={"name": "Ada Again", "email": "ada@x.org"},
        headers={"Prefer": "return=representation,resolution=merge-duplicates"},
    )
    assert on_email.status_code == 201 and on_email.json() == [{"id": 1, "name": "Ada Again"}]
    bad_key = served.client.post(
        "/rest/authors?on_conflict=name", json={"name": "x"}, headers={"Prefer": "resolution=merge-duplicates"}
    )
    assert bad_key.status_code == 400 and bad_key.json()["code"] == "SLR118"


def test_patch_with_filters_returns_what_changed(served: Served) -> None:
    changed = served.client.patch(
        "/rest/articles?author_id=eq.1&select=id,titre&order=id", json={"contenu": "revu"}, headers=REPRESENT
    )
    assert changed.status_code == 200 and sorted(r["id"] for r in changed.json()) == [1, 2]
    assert changed.headers["content-range"] == "0-1/*"
    quiet = served.client.patch("/rest/articles?id=eq.3", json={"titre": "Gamma 2"})
    assert quiet.status_code == 204
    assert served.rows("SELECT titre, contenu FROM articles WHERE id IN (1, 3) ORDER BY id") == [
        ("Alpha", "revu"),
        ("Gamma 2", None),
    ]
    nothing = served.client.patch("/rest/articles?id=eq.99", json={"titre": "x"}, headers=REPRESENT)
    assert nothing.status_code == 200 and nothing.json() == []


def test_delete_with_filters(served: Served) -> None:
    gone = served.client.delete("/rest/articles?id=in.(4,5)&select=id,titre", headers=REPRESENT)
    assert gone.status_code == 200 and sorted(r["id"] for r in gone.json()) == [4, 5]
    assert served.client.delete("/rest/comments?article_id=eq.1").status_code == 204
    assert served.rows("SELECT count(*) FROM articles")[0][0] == 3
    assert served.rows("SELECT count(*) FROM comments")[0][0] == 1


def test_key_shorthand_get_put_patch_delete(served: Served) -> None:
    put = served.client.put("/rest/articles/2", json={"titre": "Beta v2"})
    assert put.status_code == 200 and put.json()["titre"] == "Beta v2" and put.json()["id"] == 2
    patched = served.client.patch("/rest/articles/2?select=titre", json={"contenu": "x"})
    assert patched.json() == {"titre": "Beta v2"}
    assert served.client.put("/rest/articles/99", json={"titre": "x"}).status_code == 404
    assert served.client.delete("/rest/articles/2").status_code == 204
    assert served.client.get("/rest/articles/2").status_code == 404
    assert served.client.post("/rest/articles/2", json={"titre": "x"}).status_code == 405
    assert served.client.put("/rest/articles?id=eq.1", json={"titre": "x"}).status_code == 405


def test_constraint_violations_and_bad_bodies(served: Served) -> None:
    duplicate = served.client.post("/rest/authors", json={"name": "Dup", "email": "ada@x.org"})
    assert duplicate.status_code == 409 and duplicate.json()["code"] == "SLR509"
    orphan = served.client.post("/rest/comments", json={"article_id": 999, "body": "x"})
    assert orphan.status_code == 409
    required = served.client.post("/rest/authors", json={"email": "no-name@x.org"})
    assert required.status_code == 400 and required.json()["code"] == "SLR522"
    negative = served.client.post("/rest/articles", json={"titre": "x", "price": -1})
    assert negative.status_code == 400
    cases = [
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b'{"nope": 1}', "application/json", 400),
        (b'{"id": "abc", "name": "x"}', "application/json", 400),
        (b'{"id": 1.5, "name": "x"}', "application/json", 400),
        (b'{"name": {"a": 1}}', "application/json", 400),
        (b"[]", "application/json", 400),
        (b"name\n", "application/xml", 415),
    ]
    for body, media, status in cases:
        answer = served.client.post("/rest/authors", content=body, headers={"Content-Type": media})
        assert answer.status_code == status, (body, answer.text)
    assert served.client.patch("/rest/authors?id=eq.1", json={}).status_code == 400
    assert served.rows("SELECT count(*) FROM authors")[0][0] == 3


def test_permissions_with_claims_presets_and_checks(served: Served) -> None:
    author = {"X-Role": "author", "X-Sub": "2"}
    made = served.client.post("/rest/articles?select=titre,author_id", json={"titre": "Mine"}, headers={**author, **REPRESENT})
    assert made.status_code == 201 and made.json() == [{"titre": "Mine", "author_id": 2}]
    forged = served.client.post("/rest/articles", json={"titre": "Forged", "reviewer_id": 1}, headers=author)
    assert forged.status_code == 403
    others = served.client.patch("/rest/articles?id=eq.1", json={"titre": "hacked"}, headers={**author, **REPRESENT})
    assert others.status_code == 200 and others.json() == []
    refused = served.client.patch("/rest/articles?id=eq.3", json={"titre": "forbidden"}, headers=author)
    assert refused.status_code == 403
    assert served.rows("SELECT titre FROM articles WHERE id IN (1, 3) ORDER BY id") == [("Alpha",), ("Gamma",)]
    assert served.client.delete("/rest/articles?id=eq.1", headers=author).headers["content-range"] == "*/0"
    assert served.client.delete("/rest/articles?id=eq.3", headers=author).status_code == 204
    assert served.rows("SELECT id FROM articles WHERE id IN (1, 3)") == [(1,)]
    reader = {"X-Role": "reader"}
    assert served.client.post("/rest/articles", json={"titre": "x"}, headers=reader).status_code == 403
    assert served.client.delete("/rest/articles", headers=reader).status_code == 403
