"""The OpenAPI document generated from the tables (per role) and the offline Swagger UI page."""

from __future__ import annotations

from rest.blog import Served


def test_document_describes_tables_parameters_schemas_and_security(sqlite_served: Served) -> None:
    answer = sqlite_served.client.get("/rest/openapi.json")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/openapi+json")
    doc = answer.json()
    assert doc["openapi"] == "3.0.3"
    assert set(doc["paths"]) == {
        "/articles",
        "/articles/{id}",
        "/authors",
        "/authors/{id}",
        "/comments",
        "/comments/{id}",
        "/article_titles",
    }
    articles = doc["paths"]["/articles"]
    assert set(articles) == {"get", "post", "patch", "delete"}
    names = {p["name"] for p in articles["get"]["parameters"]}
    assert {"select", "order", "limit", "offset", "or", "Range", "Range-Unit", "Prefer", "id", "titre", "price"} <= names
    assert {p["name"] for p in articles["post"]["parameters"]} >= {"columns", "on_conflict", "Prefer"}
    assert set(doc["paths"]["/article_titles"]) == {"get"}
    schema = doc["components"]["schemas"]["articles"]["properties"]
    assert schema["id"]["type"] == "integer" and schema["price"]["type"] == "number"
    assert schema["published"] == {"type": "string", "format": "date", "nullable": True, "description": "date"}
    body = articles["post"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"][0]
    assert body["required"] == ["titre"]
    assert set(doc["components"]["securitySchemes"]) == {"apiKey", "bearer"}
    assert doc["components"]["securitySchemes"]["bearer"]["bearerFormat"] == "JWT"
    assert sqlite_served.client.get("/rest/").json() == doc


def test_document_follows_the_role(sqlite_served: Served) -> None:
    reader = sqlite_served.client.get("/rest/openapi.json", headers={"X-Role": "reader"}).json()
    assert set(reader["paths"]) == {"/articles", "/articles/{id}", "/authors", "/authors/{id}"}
    assert set(reader["paths"]["/articles"]) == {"get"}
    assert set(reader["components"]["schemas"]["articles"]["properties"]) == {"id", "titre", "author_id"}
    assert sqlite_served.client.get("/rest/openapi.json", headers={"X-Role": "nobody"}).status_code == 401


def test_docs_page_is_served_offline(sqlite_served: Served) -> None:
    page = sqlite_served.client.get("/rest/openapi.html")
    assert page.status_code == 200 and "/rest/openapi.json" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from elsewhere
    for name in ("swagger-ui-bundle.js", "swagger-ui.css"):
        asset = sqlite_served.client.get(f"/rest/openapi.assets/{name}")
        assert asset.status_code == 200 and len(asset.content) > 100_000
        assert f"/rest/openapi.assets/{name}" in page.text
    assert sqlite_served.client.get("/rest/openapi.assets/..%2Fservice.py").status_code == 404
