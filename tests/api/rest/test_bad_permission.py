"""A permission of ``api.roles`` whose filter names a column the table lacks: REST answers 500 ``bad-permission`` (a
server misconfiguration, in the REST error shape) naming the role and table (the log names the column), not a 400
blaming the client."""

from __future__ import annotations

from pathlib import Path

import msgspec
from api_support import execute_all
from starlette.applications import Starlette

from rest.blog import SQLITE_DDL, HeaderGate, LiveApp
from sluice.api.rest.adapt import mount_data_api_rest
from sluice.api.service import DataApi
from sluice.api.settings import ApiSettings

ROLES = {"anon": {"articles": {"select": {"columns": ["id", "nocol"], "filter": {"pricee": {"_eq": 1}}}}}}


def test_rest_refuses_a_broken_permission_as_a_server_error_naming_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'blog.db'}"
    execute_all(url, [*SQLITE_DDL, "INSERT INTO authors (id, name) VALUES (1, 'Ada')"])
    settings = msgspec.convert({"sources": [{"connection": "db", "tables": ["*"]}], "roles": ROLES}, ApiSettings)
    api = DataApi(settings, {"db": url}, tmp_path, HeaderGate())
    api.start(watch=False)
    app = Starlette()
    mount_data_api_rest(app, api)
    live = LiveApp(app)
    try:
        answer = live.client.get("/rest/articles?select=id", headers={"X-Role": "anon"})
        assert answer.status_code == 500, answer.text
        body = answer.json()
        assert body["code"] == "bad-permission"
        assert "role 'anon'" in body["message"] and "articles" in body["message"]
        assert "pricee" not in body["message"]  # the permission's settings stay in the server log
        assert "SELECT" not in answer.text
        assert live.client.get("/rest/authors?select=id", headers={"X-Role": "admin"}).status_code == 200
    finally:
        live.stop()
        api.close()
