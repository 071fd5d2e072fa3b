"""The API commands of ``examples/employees`` (seed 000) and ``examples/articles`` (seed 001) as their READMEs
give them: each example is copied with its databases, schemas, slot and sync renamed onto the fixtures'
servers, seeded and synced as ``run.sh`` does, served, and its ``api.sh`` (the README's curl commands) is run
against the server; the answers are checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from api_support import execute_all, fetch, served

from sluice.api.security.keys import open_key_store
from sluice.project.load import load_project
from sluice.server.app import create_app
from sluice.server.serve import bind, url_of
from sluice.server.services import ServerSettings, Services

pytestmark = [pytest.mark.mysql, pytest.mark.postgres]
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}
PG_EXAMPLE = "postgresql://postgres@127.0.0.1:25432/postgres"
MY_EXAMPLE = "mysql://sluice:sluice@127.0.0.1:23306/"


def copy_example(name: str, tmp_path: Path, replacements: list[tuple[str, str]]) -> Path:
    """``examples/<name>`` in ``tmp_path`` (without its ``.sluice``), its sluice.yaml rewritten."""
    folder = tmp_path / name
    shutil.copytree(EXAMPLES / name, folder, ignore=shutil.ignore_patterns(".sluice", "__pycache__"))
    text = (folder / "sluice.yaml").read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    (folder / "sluice.yaml").write_text(text, encoding="utf-8")
    return folder


def run(*command: str, timeout: float = 120) -> str:
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=timeout, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def sluice(*args: str) -> str:
    return run(sys.executable, "-m", "sluice", *args)


def sections(output: str) -> dict[str, str]:
    """api.sh's output by step: the text after each ``-- title`` line, keyed by the title's first words."""
    found: dict[str, str] = {}
    title = ""
    for line in output.splitlines():
        if line.startswith("-- "):
            title = line[3:]
            found[title] = ""
        elif title:
            found[title] += line + "\n"
    return found


def step(found: dict[str, str], start: str) -> str:
    (title,) = [t for t in found if t.startswith(start)]
    return found[title].strip()


def data(found: dict[str, str], start: str) -> Any:
    body = json.loads(step(found, start))
    assert "errors" not in body, body
    return body["data"]


def mysql_base(mysql_url: str) -> str:
    parts = urlsplit(mysql_url)
    return f"{parts.scheme}://{parts.netloc}/"


@pytest.fixture
def prefix(mysql_url: str) -> Iterator[str]:
    """A unique name prefix; the MariaDB databases made under it are dropped afterwards."""
    name = f"sluice_test_{uuid.uuid4().hex[:10]}"
    yield name
    rows = fetch(mysql_url, f"SHOW DATABASES LIKE '{name}%'")
    execute_all(mysql_url, [f"DROP DATABASE IF EXISTS `{db}`" for (db,) in rows])


def test_employees_api_commands(tmp_path: Path, prefix: str, mysql_url: str, pg_db_url: str) -> None:
    folder = copy_example(
        "employees",
        tmp_path,
        [
            (PG_EXAMPLE, pg_db_url),
            (MY_EXAMPLE, mysql_base(mysql_url)),
            ("sluice_example_hr", f"{prefix}_hr"),
            ("target_namespace: employees_both", f"target_namespace: {prefix}_both"),
            ("target_namespace: employees\n", f"target_namespace: {prefix}_emp\n"),
            ("search_path%3Demployees", f"search_path%3D{prefix}_emp"),
            ("  - name: employees-both", f"  - name: {prefix}-both"),
            ("  - name: employees\n", f"  - name: {prefix}\n"),
            ("sync: employees,", f"sync: {prefix},"),
        ],
    )
    run(sys.executable, str(folder / "seed.py"), "fresh")
    sluice("sync", str(folder), "--name", prefix, "--once")
    project = load_project(str(folder))
    _, key = open_key_store(project.resolve_state_url(), project.root).create("rh", "test")
    with served(create_app(Services(project, ServerSettings(workers=False, resume=False)))) as client:
        output = run("bash", str(folder / "api.sh"), str(client.base_url), key)
    found = sections(output)

    directory = data(found, "employes, without credentials")["employes"]
    assert [e["nom"] for e in directory] == ["Fournier", "Garcia", "Laurent"] and "salaire" not in directory[0]
    created = data(found, "create_employe")["create_employe"]
    assert created == {"id": 21, "nom": "Nguyen", "prenom": "Sarah"}
    assert fetch(mysql_url, f"SELECT nom FROM `{prefix}_hr`.employes WHERE id = 21") == [("Nguyen",)]
    assert data(found, "employe_par_id(21): null") == {"employe_par_id": None}
    synced = data(found, "sync_employes: one pass")["sync_employes"]
    assert (synced["mode"], synced["state"]) == ("pass", "done")
    assert synced["applied"] == {"snapshot": 0, "insert": 1, "update": 0, "delete": 0, "total": 1}
    assert synced["tables"][0]["target_table"] == f"{prefix}_emp.employes"
    after = data(found, "employe_par_id(21), read from PostgreSQL")["employe_par_id"]
    assert after == {"nom": "Nguyen", "prenom": "Sarah", "salaire": "47000.00"}
    stats = {g["keys"]["departement"]: g["count"] for g in data(found, "stats_employes")["stats_employes"]}
    assert stats == {"Direction": 2, "Finance": 4, "Informatique": 8, "RH": 3, "Ventes": 4}
    refusal = step(found, "sync_employes without credentials")
    assert '"code":"permission-denied"' in refusal and refusal.endswith("(HTTP 403)")


def test_articles_api_commands(
    tmp_path: Path, prefix: str, mysql_url: str, pg_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    slot = f"{prefix}_slot"
    folder = copy_example(
        "articles",
        tmp_path,
        [
            (PG_EXAMPLE, pg_db_url),
            (MY_EXAMPLE, mysql_base(mysql_url)),
            ("sluice_example_articles_b", f"{prefix}_b"),
            ("slot: sluice_example_articles", f"slot: {slot}"),
            ("articles_a", f"{prefix}_a"),
            ("  - name: articles\n", f"  - name: {prefix}\n"),
        ],
    )
    sock = bind("127.0.0.1", 0)
    monkeypatch.setenv("ARTICLES_GATEWAY_UPSTREAM", url_of(sock))  # the gateway route goes to this server
    try:
        run(sys.executable, str(folder / "seed.py"), "fresh")
        sluice("sync", str(folder), "--once")
        project = load_project(str(folder))
        _, key = open_key_store(project.resolve_state_url(), project.root).create("redacteur", "Emma")
        with served(create_app(Services(project, ServerSettings(workers=False, resume=False))), sock) as client:
            output = run("bash", str(folder / "api.sh"), str(client.base_url), key)
        sluice("sync", str(folder), "--once")
        assert "EQUAL" in sluice("sync", "verify", str(folder))  # the API's writes reached base B
    finally:
        with psycopg.connect(pg_db_url, autocommit=True) as pg:
            pg.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s", (slot,))
    found = sections(output)

    assert step(found, "GET /health").startswith('{"status":"ok"')
    published = json.loads(step(found, "GET /rest/articles, without").rsplit("\n", 1)[0])
    assert [a["id"] for a in published] == [1, 2, 3, 5]  # the drafts (4, 6) are not the anonymous role's
    one = json.loads(step(found, "GET /rest/articles/1").rsplit("\n", 1)[0])
    assert one["tags"] == ["graphql", "api"]
    (posted,) = json.loads(step(found, "POST /rest/articles"))
    assert posted["author"] == "Emma"
    put = step(found, f"PUT /rest/articles/{posted['id']}")
    assert json.loads(put.rsplit("\n", 1)[0])["views"] == 10 and put.endswith("(HTTP 200)")
    assert step(found, "DELETE /rest/articles/1").endswith("(HTTP 404)")
    assert len(data(found, "GraphQL getArticles")["getArticles"]) == 3
    assert data(found, "GraphQL getArticle(")["getArticle"]["author"] == "Emma"
    made = data(found, "GraphQL createArticle")["createArticle"]
    assert made["author"] == "Emma"
    assert data(found, "GraphQL updateArticle")["updateArticle"]["published"] is True
    assert data(found, "GraphQL deleteArticle")["deleteArticle"]["id"] == made["id"]
    gateway = step(found, "GET /gateway/sluice/syncs: ")
    assert gateway.endswith("(HTTP 200)") and f'"name": "{prefix}"' in gateway
    assert '"code":"forbidden-role"' in step(found, "GET /gateway/sluice/syncs without")
    metrics = step(found, "GET /metrics")
    assert 'api="graphql",operation="createArticle",role="redacteur",status="200"}' in metrics  # counts: whole process
    assert 'api="rest",operation="POST articles",role="redacteur",status="201"}' in metrics
    assert fetch(mysql_url, f"SELECT author FROM `{prefix}_b`.articles WHERE id = {posted['id']}") == [("Emma",)]
