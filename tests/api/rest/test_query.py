"""The query-string parser alone: PostgREST's syntax into select items, boolean expressions, order and pages."""

from __future__ import annotations

import pytest

from sluice.api.rest.errors import RestError
from sluice.api.rest.query import Embed, Field, OrderTerm, Star, parse_query, split_top


def test_each_operator_becomes_a_where_expression() -> None:
    pairs = [
        ("a", "eq.1", {"a": {"_eq": "1"}}),
        ("a", "neq.1", {"a": {"_neq": "1"}}),
        ("a", "gt.1", {"a": {"_gt": "1"}}),
        ("a", "gte.1", {"a": {"_gte": "1"}}),
        ("a", "lt.1", {"a": {"_lt": "1"}}),
        ("a", "lte.1", {"a": {"_lte": "1"}}),
        ("a", "like.*x_*", {"a": {"_like": "%x_%"}}),
        ("a", "ilike.X*", {"a": {"_ilike": "X%"}}),
        ("a", "match.^x", {"a": {"_regex": "^x"}}),
        ("a", "imatch.^x", {"a": {"_iregex": "^x"}}),
        ("a", 'in.(1,"b,c",d)', {"a": {"_in": ["1", "b,c", "d"]}}),
        ("a", "in.()", {"a": {"_in": []}}),
        ("a", "is.null", {"a": {"_is_null": True}}),
        ("a", "is.not_null", {"a": {"_is_null": False}}),
        ("a", "is.true", {"a": {"_is": True}}),
        ("a", "is.false", {"a": {"_is": False}}),
        ("a", "not.eq.1", {"_not": {"a": {"_eq": "1"}}}),
        ("a", "eq.x.y", {"a": {"_eq": "x.y"}}),
    ]
    for key, value, expected in pairs:
        assert parse_query([(key, value)]).where == expected, value


def test_logic_trees_nest_and_negate() -> None:
    request = parse_query([("or", "(a.eq.1,and(b.gt.2,b.lt.5),not.and(c.is.null,d.in.(1,2)))"), ("not.and", "(e.eq.x)")])
    assert request.where == {
        "_and": [
            {
                "_or": [
                    {"a": {"_eq": "1"}},
                    {"_and": [{"b": {"_gt": "2"}}, {"b": {"_lt": "5"}}]},
                    {"_not": {"_and": [{"c": {"_is_null": True}}, {"d": {"_in": ["1", "2"]}}]}},
                ]
            },
            {"_not": {"_and": [{"e": {"_eq": "x"}}]}},
        ]
    }


def test_select_items_aliases_casts_and_embeds() -> None:
    request = parse_query(
        [("select", 'id,t:titre,price::text,"odd name",author!author_id(name),posts:articles!inner(*,comments(body))')]
    )
    assert request.select == (
        Field("id"),
        Field("titre", "t"),
        Field("price", None, "text"),
        Field("odd name"),
        Embed("author", (Field("name"),), None, "author_id", False),
        Embed("articles", (Star(), Embed("comments", (Field("body"),))), "posts", None, True),
    )


def test_order_limit_offset_and_embedded_paths() -> None:
    request = parse_query(
        [
            ("order", "a.desc.nullslast,b"),
            ("limit", "5"),
            ("offset", "10"),
            ("author.name", "eq.x"),
            ("articles.order", "id.desc"),
            ("articles.limit", "2"),
        ]
    )
    top = request.nodes[()]
    assert top.order == [OrderTerm("a", True, "last"), OrderTerm("b")]
    assert (top.limit, top.offset) == (5, 10)
    assert request.nodes[("author",)].filters == [{"name": {"_eq": "x"}}]
    assert request.nodes[("articles",)].order == [OrderTerm("id", True)]
    assert request.nodes[("articles",)].limit == 2


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("a", "equals.1"),
        ("a", "eq"),
        ("a", "in.1,2"),
        ("a", "is.maybe"),
        ("or", "a.eq.1"),
        ("or", "(a)"),
        ("or", "()"),
        ("select", "id,,name"),
        ("select", "a(b"),
        ("select", "a->b"),
        ("select", "a::regclass"),
        ("order", "a.sideways"),
        ("limit", "-1"),
        ("offset", "x"),
        ("", "eq.1"),
        ("a..b", "eq.1"),
    ],
)
def test_malformed_parameters_are_400(key: str, value: str) -> None:
    with pytest.raises(RestError) as caught:
        parse_query([(key, value)])
    assert caught.value.status == 400
    assert caught.value.code == "SLR100"


def test_split_top_respects_quotes_and_parentheses() -> None:
    assert split_top('a,"b,c",in.(1,2),d') == ["a", '"b,c"', "in.(1,2)", "d"]
    with pytest.raises(RestError):
        split_top('a,"b')
