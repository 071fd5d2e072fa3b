"""GET on each database: every operator, select with embedding, order, limit/offset/Range, Prefer: count
with Content-Range and 206/416, singular objects, the /{table}/{id} shorthand, errors."""

from __future__ import annotations

from typing import Any

import pytest

from rest.blog import Served


def ids(served: Served, query: str, **headers: str) -> list[int]:
    order = "" if "order=" in query else "order=id&"
    answer = served.client.get(f"/rest/articles?select=id&{order}{query}", headers=headers)
    assert answer.status_code in (200, 206), answer.text
    return [row["id"] for row in answer.json()]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("id=eq.2", [2]),
        ("id=neq.2", [1, 3, 4, 5]),
        ("id=gt.3", [4, 5]),
        ("id=gte.3", [3, 4, 5]),
        ("id=lt.2", [1]),
        ("id=lte.2", [1, 2]),
        ("titre=like.*lpha", [1]),
        ("titre=like.D*", []),
        ("titre=ilike.D*", [4]),
        ("titre=like.Eps*", [5]),
        ("titre=like.*lt_", [4]),
        ("id=in.(1,3,9)", [1, 3]),
        ("id=not.in.(1,3)", [2, 4, 5]),
        ("contenu=is.null", [3]),
        ("contenu=not.is.null", [1, 2, 4, 5]),
        ("author_id=is.not_null&author_id=eq.1", [1, 2]),
        ("price=gte.10", [1, 4]),
        ("published=gt.2024-02-01", [2, 4, 5]),
        ("id=not.eq.1&id=not.eq.2", [3, 4, 5]),
        ("or=(id.eq.1,titre.eq.Gamma)", [1, 3]),
        ("or=(id.eq.1,and(id.gt.3,price.lt.50))", [1, 5]),
        ("and=(id.gt.1,id.lt.4)", [2, 3]),
        ("not.or=(id.eq.1,id.eq.2)", [3, 4, 5]),
        ("titre=eq.Epsilon%25", [5]),
    ],
)
def test_filter_operators(served: Served, query: str, expected: list[int]) -> None:
    assert ids(served, query) == expected


def test_is_true_false_on_a_boolean(served: Served) -> None:
    def names(query: str) -> list[str]:
        return [r["name"] for r in served.client.get(f"/rest/authors?select=name&order=id&{query}").json()]

    assert names("active=is.true") == ["Ada", "Chloé"]
    assert names("active=is.false") == ["Brice"]
    assert names("active=eq.false") == ["Brice"]


def test_match_is_a_regular_expression_where_the_database_has_one(served: Served) -> None:
    if served.db.dialect.name == "sqlite":
        assert served.client.get("/rest/articles?titre=match.^A").status_code == 400
        return
    assert ids(served, "titre=match.^[AB]") == [1, 2]
    assert ids(served, "titre=imatch.^d") == [4]


def test_select_columns_aliases_casts_and_values(served: Served) -> None:
    rows = served.client.get(
        "/rest/articles?select=id,name:titre,price,published,meta,cents:price::text&id=in.(1,3)&order=id"
    ).json()
    assert [r["name"] for r in rows] == ["Alpha", "Gamma"]
    assert float(rows[0]["price"]) == 10.5 and rows[1]["price"] is None
    assert rows[0]["published"] == "2024-01-05"
    assert rows[0]["meta"] == {"lang": "fr"}
    assert float(rows[0]["cents"]) == 10.5 and isinstance(rows[0]["cents"], str)
    author = served.client.get("/rest/authors?id=eq.2").json()
    assert author == [{"id": 2, "name": "Brice", "email": "brice@x.org", "active": False}]


def test_embed_many_to_one_one_to_many_nested_and_hinted(served: Served) -> None:
    rows = served.client.get(
        "/rest/articles?select=id,author(name),comments(body,article_id)&id=in.(1,5)&order=id&comments.order=id.desc"
    ).json()
    assert rows == [
        {"id": 1, "author": {"name": "Ada"}, "comments": [{"body": "super", "article_id": 1}, {"body": "bien", "article_id": 1}]},
        {"id": 5, "author": None, "comments": []},
    ]
    rows = served.client.get(
        "/rest/authors?select=name,written:articles!author_id(titre,comments(body))&id=eq.1&written.order=id"
    ).json()
    assert rows == [
        {
            "name": "Ada",
            "written": [
                {"titre": "Alpha", "comments": [{"body": "bien"}, {"body": "super"}]},
                {"titre": "Beta", "comments": [{"body": "bof"}]},
            ],
        }
    ]
    reviewer = served.client.get("/rest/articles?select=id,rev:authors!reviewer_id(name)&id=eq.1").json()
    assert reviewer == [{"id": 1, "rev": {"name": "Brice"}}]
    by_column = served.client.get("/rest/articles?select=id,author_id(name)&id=eq.3").json()
    assert by_column == [{"id": 3, "author_id": {"name": "Brice"}}]


def test_embedded_filters_limit_and_inner(served: Served) -> None:
    rows = served.client.get(
        "/rest/authors?select=id,articles!author_id(id)&articles.id=gt.1&articles.limit=1&articles.order=id&order=id"
    ).json()
    assert rows == [{"id": 1, "articles": [{"id": 2}]}, {"id": 2, "articles": [{"id": 3}]}, {"id": 3, "articles": [{"id": 4}]}]
    inner = served.client.get("/rest/articles?select=id,author!inner(name)&author.name=eq.Ada&order=id").json()
    assert [r["id"] for r in inner] == [1, 2]
    left = served.client.get("/rest/articles?select=id,author(name)&author.name=eq.Ada&order=id").json()
    assert [r["author"] for r in left] == [{"name": "Ada"}, {"name": "Ada"}, None, None, None]


def test_embedding_errors(served: Served) -> None:
    ambiguous = served.client.get("/rest/articles?select=id,authors(name)")
    assert ambiguous.status_code == 300 and ambiguous.json()["code"] == "SLR201"
    assert "authors!articles_author_id_fkey" in ambiguous.json()["hint"]
    none = served.client.get("/rest/comments?select=id,authors(name)")
    assert none.status_code == 400 and none.json()["code"] == "SLR200"
    stray = served.client.get("/rest/articles?select=id&author.name=eq.x")
    assert stray.status_code == 400


def test_order(served: Served) -> None:
    assert ids(served, "order=price.desc.nullslast,id") == [4, 1, 5, 2, 3]
    assert ids(served, "order=price.asc.nullsfirst") == [3, 2, 5, 1, 4]
    assert ids(served, "order=author_id.desc.nullslast,id.desc") == [4, 3, 2, 1, 5]


def test_limit_offset_range_and_content_range(served: Served) -> None:
    answer = served.client.get("/rest/articles?select=id&order=id&limit=2&offset=1")
    assert answer.status_code == 200 and answer.headers["content-range"] == "1-2/*"
    assert [r["id"] for r in answer.json()] == [2, 3]
    ranged = served.client.get("/rest/articles?select=id&order=id", headers={"Range": "3-10", "Range-Unit": "items"})
    assert [r["id"] for r in ranged.json()] == [4, 5] and ranged.headers["content-range"] == "3-4/*"
    open_ended = served.client.get("/rest/articles?select=id&order=id", headers={"Range": "4-"})
    assert [r["id"] for r in open_ended.json()] == [5]
    empty = served.client.get("/rest/articles?select=id&id=gt.100")
    assert empty.json() == [] and empty.headers["content-range"] == "*/*"
    assert served.client.get("/rest/articles", headers={"Range": "5-2"}).status_code == 416


def test_prefer_count_with_content_range_206_and_416(served: Served) -> None:
    exact = served.client.get("/rest/articles?select=id&order=id&limit=2", headers={"Prefer": "count=exact"})
    assert exact.status_code == 206
    assert exact.headers["content-range"] == "0-1/5"
    assert exact.headers["preference-applied"] == "count=exact"
    whole = served.client.get("/rest/articles?select=id&id=lte.3", headers={"Prefer": "count=exact"})
    assert whole.status_code == 200 and whole.headers["content-range"] == "0-2/3"
    past = served.client.get("/rest/articles?select=id&offset=9", headers={"Prefer": "count=exact"})
    assert past.status_code == 416 and past.headers["content-range"] == "*/5" and past.json()["code"] == "SLR103"
    for count in ("planned", "estimated"):
        answer = served.client.get("/rest/articles?select=id&limit=1", headers={"Prefer": f"count={count}"})
        assert answer.status_code in (200, 206)
        size = answer.headers["content-range"].split("/")[1]
        assert size.isdigit(), answer.headers["content-range"]
    estimated = served.client.get("/rest/articles?select=id&limit=1", headers={"Prefer": "count=estimated"})
    assert estimated.headers["content-range"] == "0-0/5"  # exact below max_rows


def test_singular_object_and_key_shorthand(served: Served) -> None:
    one = served.client.get("/rest/articles?select=id,titre&id=eq.2", headers={"Accept": "application/vnd.pgrst.object+json"})
    assert one.status_code == 200 and one.json() == {"id": 2, "titre": "Beta"}
    many = served.client.get("/rest/articles?select=id", headers={"Accept": "application/vnd.pgrst.object+json"})
    assert many.status_code == 406 and many.json()["code"] == "SLR116"
    by_key = served.client.get("/rest/articles/3?select=titre,author(name)")
    assert by_key.status_code == 200 and by_key.json() == {"titre": "Gamma", "author": {"name": "Brice"}}
    assert served.client.get("/rest/articles/99").status_code == 404
    assert served.client.get("/rest/articles/abc").status_code == 400


def test_head_answers_headers_only(served: Served) -> None:
    answer = served.client.head("/rest/articles?select=id", headers={"Prefer": "count=exact"})
    assert answer.status_code == 200 and answer.content == b"" and answer.headers["content-range"] == "0-4/5"


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        ("/rest/nope", {}, 404, "SLR205"),
        ("/rest/articles?nope=eq.1", {}, 400, "SLR204"),
        ("/rest/articles?select=nope", {}, 400, "SLR204"),
        ("/rest/articles?order=nope", {}, 400, "SLR204"),
        ("/rest/articles?id=eq.abc", {}, 400, "SLR522"),
        ("/rest/articles?id=foo.1", {}, 400, "SLR100"),
        ("/rest/articles?price=eq.notanumber", {}, 400, "SLR522"),
        ("/rest/articles?id=eq.99999999999999999999999", {}, 400, "SLR522"),
        ("/rest/articles?published=eq.notadate", {}, 400, "SLR522"),
        ("/rest/articles", {"Accept": "image/png"}, 406, "SLR107"),
        ("/rest/articles", {"X-Role": "nobody"}, 401, "unauthenticated"),
        ("/rest/comments", {"X-Role": "reader"}, 403, "SLR403"),
    ],
)
def test_client_mistakes_are_4xx_json(served: Served, path: str, headers: dict[str, str], status: int, code: str) -> None:
    answer = served.client.get(path, headers=headers)
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert body["code"] == code and body["message"]
    assert set(body) == {"code", "message", "details", "hint"}


def test_views_are_read_only(served: Served) -> None:
    assert [r["titre"] for r in served.client.get("/rest/article_titles?order=id&limit=2").json()] == ["Alpha", "Beta"]
    refused = served.client.post("/rest/article_titles", json={"titre": "x"})
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"


def test_role_columns_rows_and_limit(served: Served) -> None:
    reader = {"X-Role": "reader"}
    rows = served.client.get("/rest/articles?order=id", headers=reader).json()
    assert rows == [
        {"id": 1, "titre": "Alpha", "author_id": 1},
        {"id": 2, "titre": "Beta", "author_id": 1},
        {"id": 3, "titre": "Gamma", "author_id": 2},
    ]
    assert served.client.get("/rest/articles?select=price", headers=reader).status_code == 400
    assert served.client.get("/rest/articles?price=gt.1", headers=reader).status_code == 400
    assert served.client.get("/rest/articles?select=id,comments(body)", headers=reader).status_code == 403
    author = {"X-Role": "author", "X-Sub": "2"}
    assert [r["id"] for r in served.client.get("/rest/articles?select=id", headers=author).json()] == [3]
    assert served.client.get("/rest/articles?select=id", headers={"X-Role": "author"}).json() == []
