"""CSV out (Accept: text/csv) and in (Content-Type: text/csv) through the REST routes, and the CSV codec alone."""

from __future__ import annotations

import pytest

from rest.blog import Served
from sluice.api.rest.csv_io import read_csv, read_json, write_csv
from sluice.api.rest.errors import RestError


def test_csv_out_with_nulls_booleans_quotes_and_nested_values(served: Served) -> None:
    served.client.post("/rest/authors", json={"id": 9, "name": 'Zoé "Z", la', "email": None, "active": False})
    answer = served.client.get("/rest/authors?select=id,name,email,active&id=in.(1,9)&order=id", headers={"Accept": "text/csv"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert answer.text == 'id,name,email,active\r\n1,Ada,ada@x.org,true\r\n9,"Zoé ""Z"", la",,false\r\n'
    nested = served.client.get("/rest/articles?select=id,author(name)&id=eq.1", headers={"Accept": "text/csv"})
    assert nested.text == 'id,author\r\n1,"{""name"":""Ada""}"\r\n'
    empty = served.client.get("/rest/articles?id=eq.99", headers={"Accept": "text/csv"})
    assert empty.status_code == 200 and empty.text == ""


def test_csv_in(served: Served) -> None:
    body = 'name,email,active\r\nHugo,hugo@x.org,true\r\n"Inès, la",,false\r\n'
    made = served.client.post(
        "/rest/authors?select=name,email,active",
        content=body.encode(),
        headers={"Content-Type": "text/csv", "Prefer": "return=representation"},
    )
    assert made.status_code == 201, made.text
    assert sorted((r["name"], r["email"], r["active"]) for r in made.json()) == [
        ("Hugo", "hugo@x.org", True),
        ("Inès, la", None, False),
    ]
    bad = served.client.post("/rest/authors", content=b"name,active\r\nx,maybe\r\n", headers={"Content-Type": "text/csv"})
    assert bad.status_code == 400
    assert served.rows("SELECT count(*) FROM authors WHERE name = 'x'")[0][0] == 0


def test_codec() -> None:
    assert write_csv([{"a": 1, "b": None, "c": [1, 2]}]) == b'a,b,c\r\n1,,"[1,2]"\r\n'
    assert read_csv(b"\xef\xbb\xbfa,b\r\n1,\r\n") == [{"a": "1", "b": None}]
    for body in (b"", b"a,a\n1,2\n", b"a,b\n1\n", b'a\n"x', b"\xff\xfe"):
        with pytest.raises(RestError):
            read_csv(body)


def test_numbers_keep_the_text_the_database_wrote() -> None:
    data = b'[{"a":30.00,"b":12345678901234567890.0123456789,"c":{"x":[1.50,"2.0"]},"d":7,"e":1e400}]'
    assert write_csv(read_json(data)).decode().splitlines() == [
        "a,b,c,d,e",
        '30.00,12345678901234567890.0123456789,"{""x"":[1.50,""2.0""]}",7,1e400',
    ]
