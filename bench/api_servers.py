"""The two GraphQL servers of ``bench/api.py`` and the two queries written for each one's schema.

* PostGraphile 4 (``bench/peers/setup_postgraphile.sh`` installs it into ``bench/.npm/postgraphile4``), run by its own
  CLI on the machine's Node.js with production settings: GraphiQL and the query log off, no watch mode (its default),
  ``NODE_ENV=production``, node-postgres's pool at ``--pool`` (its default 10), one process.
* ``sluice serve`` on a generated project whose ``api:`` section exposes the same two tables (read-only, role
  ``anon`` allowed to select both, no rate limit) with its per-request log line off (``log_requests: false``,
  as PostGraphile's query log is), everything else at its defaults.

Each server's queries are found from its own schema (introspection), so a change of naming in either does not
silently compare different things: PostGraphile's ``articleById(id:)`` and ``allArticles(condition:,
orderBy:, first:)`` with ``authorByAuthorId`` (its v4 default inflector);
Sluice's by-key field and list field named in ``api.operations``
(``article_by_pk``, ``articles``) with Hasura's ``where`` / ``order_by`` / ``limit`` arguments and whichever field
of the article type returns one author.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

import server as server_module

HERE = Path(__file__).resolve().parent
NPM_PREFIX = HERE / ".npm" / "postgraphile4"
SETUP = HERE / "peers" / "setup_postgraphile.sh"
HOST = "127.0.0.1"
LIST_LIMIT = 20


class ServerUnavailable(Exception):
    """A server could not be started or does not serve the GraphQL the benchmark needs (the message says why)."""


class Server(server_module.Server):
    """A GraphQL server subprocess on ``127.0.0.1:port`` (bench/server.py's, with GraphQL at ``/graphql``)."""

    @property
    def graphql_url(self) -> str:
        return f"{self.url}/graphql"

    def post(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """One GraphQL request; the decoded answer. Raises ServerUnavailable on a non-JSON or non-200 answer."""
        answer = httpx.post(self.graphql_url, json={"query": query, "variables": variables or {}}, timeout=30)
        if answer.status_code != 200 or not answer.headers.get("content-type", "").startswith("application/"):
            raise ServerUnavailable(f"{self.name}: POST /graphql answered {answer.status_code}: {answer.text[:300]}")
        body: dict[str, Any] = answer.json()
        return body


@contextmanager
def running(name: str, command: list[str], port: int, log: Path, env: dict[str, str], cwd: Path) -> Iterator[Server]:
    """Start ``command``, wait until ``POST /graphql {__typename}`` answers (up to 90 s), stop its group at the end.

    Raises ServerUnavailable when the process exits first or never answers (with the tail of its log).
    """
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
    server = Server(name, process, port, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise ServerUnavailable(f"{name} exited with {process.returncode} before answering:\n{server.log_tail()}")
            try:
                answer = httpx.post(server.graphql_url, json={"query": "{__typename}"}, timeout=2)
            except httpx.HTTPError:
                answer = None
            if answer is not None and answer.status_code == 200:
                break
            if answer is not None and answer.status_code in (404, 405):
                raise ServerUnavailable(f"{name} answers but serves no GraphQL at /graphql ({answer.status_code})")
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"{name} did not answer POST /graphql within 90 s:\n{server.log_tail()}")
            time.sleep(0.2)
        yield server
    finally:
        server_module.stop_group(process)


# --- the two servers -------------------------------------------------------------------------------


def install_postgraphile() -> Path:
    """Run ``setup_postgraphile.sh`` (idempotent) and return PostGraphile's CLI script (run with the machine's ``node``)."""
    done = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, check=False, timeout=900)
    if done.returncode != 0:
        raise ServerUnavailable(f"{SETUP.name} failed ({done.returncode}):\n{(done.stderr + done.stdout)[-2000:]}")
    cli = subprocess.run(["bash", str(SETUP), "--print-cli"], capture_output=True, text=True, check=True).stdout.strip()
    return Path(cli).resolve()


def node_version() -> str:
    """The machine's Node.js version (``node --version``), which runs PostGraphile."""
    return subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()


def postgraphile(cli: Path, database_url: str, port: int, log: Path, pool: int) -> Any:
    """PostGraphile 4's CLI on the ``public`` schema of ``database_url`` (a context manager yielding a Server)."""
    command = [
        "node", str(cli), "--connection", database_url, "--schema", "public", "--host", HOST, "--port", str(port),
        "--max-pool-size", str(pool), "--disable-graphiql", "--disable-query-log",
    ]  # fmt: skip
    env = {**os.environ, "NODE_ENV": "production"}
    return running("PostGraphile", command, port, log, env, NPM_PREFIX)


def postgraphile_version() -> str:
    manifest = NPM_PREFIX / "node_modules" / "postgraphile" / "package.json"
    return str(json.loads(manifest.read_text())["version"])


def write_sluice_project(folder: Path, database_url: str) -> Path:
    """``folder/sluice.yaml``: connection ``db``, no objects, and an ``api:`` over ``authors`` and ``articles``
    without the per-request log line (``log_requests: false``: PostGraphile runs with ``--disable-query-log``)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "name": "apibench",
        "connections": {"db": database_url},
        "objects": [],
        "api": {
            "sources": [{"connection": "db", "tables": ["authors", "articles"], "read_only": True}],
            "operations": {
                "articles": {"list": "articles", "by_pk": "article_by_pk"},
                "authors": {"list": "authors", "by_pk": "author_by_pk"},
            },
            "roles": {"anon": {"authors": {"select": {}}, "articles": {"select": {}}}},
            "log_requests": False,
        },
    }
    (folder / "sluice.yaml").write_text(json.dumps(config, indent=2))  # JSON is YAML
    return folder


def sluice_serve(folder: Path, sluice_src: Path, port: int, log: Path, extra: list[str]) -> Any:
    """``python -m sluice serve`` of ``folder`` with ``sluice_src`` first on PYTHONPATH (a context manager)."""
    command = [sys.executable, "-m", "sluice", "serve", str(folder), "--host", HOST, "--port", str(port), *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(sluice_src), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    return running("sluice serve", command, port, log, env, folder)


# --- queries ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Queries:
    """One server's two documents and how to build their variables and read their answers."""

    by_pk: str
    by_pk_variables: Callable[[int], dict[str, Any]]
    by_pk_row: Callable[[dict[str, Any]], tuple[str, str] | None]
    listing: str
    list_variables: Callable[[str], dict[str, Any]]
    list_rows: Callable[[dict[str, Any]], list[tuple[str, str, str]]]


def postgraphile_queries() -> Queries:
    """PostGraphile 4's default inflector: ``articleById(id:)``, ``allArticles(condition:, orderBy:, first:)`` with
    ``nodes``, the relation ``authorByAuthorId``; ``bigint`` is its ``BigInt`` scalar (a string); orderings are
    enum values. (Its Relay node id is ``nodeId``, so a column ``id`` keeps its name.)"""

    def row(data: dict[str, Any]) -> tuple[str, str] | None:
        found = data["articleById"]
        return None if found is None else (str(found["id"]), found["titre"])

    def rows(data: dict[str, Any]) -> list[tuple[str, str, str]]:
        return [(str(n["id"]), n["titre"], n["authorByAuthorId"]["name"]) for n in data["allArticles"]["nodes"]]

    return Queries(
        by_pk="query ArticleByPk($id: BigInt!) { articleById(id: $id) { id titre } }",
        by_pk_variables=lambda key: {"id": str(key)},
        by_pk_row=row,
        listing=(
            "query ArticlesOfCategory($category: String!) { allArticles(condition: {category: $category}, "
            f"orderBy: [PUBLISHED_AT_DESC], first: {LIST_LIMIT}) {{ nodes {{ id titre authorByAuthorId {{ name }} }} }} }}"
        ),
        list_variables=lambda category: {"category": category},
        list_rows=rows,
    )


INTROSPECTION = """
query {
  __schema {
    queryType { name }
    types { name kind
      fields { name args { name type { ...T } } type { ...T } }
      inputFields { name type { ...T } }
      enumValues { name } } } }
fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name } } } }
"""


def _named(ref: dict[str, Any]) -> str:
    while ref.get("ofType"):
        ref = ref["ofType"]
    return str(ref["name"])


def _render(ref: dict[str, Any]) -> str:
    if ref["kind"] == "NON_NULL":
        return _render(ref["ofType"]) + "!"
    if ref["kind"] == "LIST":
        return "[" + _render(ref["ofType"]) + "]"
    return str(ref["name"])


def _is_list(ref: dict[str, Any]) -> bool:
    while ref["kind"] == "NON_NULL":
        ref = ref["ofType"]
    return ref["kind"] == "LIST"


def sluice_queries(server: Server) -> Queries:
    """Sluice's two documents, built from its schema. Raises ServerUnavailable when a field or argument the
    benchmark needs is missing (the message names it and what the schema has instead)."""
    answer = server.post(INTROSPECTION)
    if answer.get("errors"):
        raise ServerUnavailable(f"sluice serve: introspection failed: {answer['errors'][0].get('message')}")
    schema = answer["data"]["__schema"]
    types = {t["name"]: t for t in schema["types"]}

    def field(type_name: str, name: str) -> dict[str, Any]:
        fields = {f["name"]: f for f in types[type_name].get("fields") or []}
        if name not in fields:
            raise ServerUnavailable(f"sluice serve: {type_name} has no field {name!r} (it has: {', '.join(sorted(fields))})")
        return fields[name]

    def argument(found: dict[str, Any], name: str) -> dict[str, Any]:
        args = {a["name"]: a for a in found["args"]}
        if name not in args:
            raise ServerUnavailable(f"sluice serve: {found['name']} has no argument {name!r} (it has: {', '.join(args)})")
        return args[name]

    def input_field(type_name: str, name: str) -> dict[str, Any]:
        fields = {f["name"]: f for f in types[type_name].get("inputFields") or []}
        if name not in fields:
            raise ServerUnavailable(f"sluice serve: input {type_name} has no field {name!r} (it has: {', '.join(fields)})")
        return fields[name]

    root = schema["queryType"]["name"]
    by_pk = field(root, "article_by_pk")
    key_arg = argument(by_pk, "id")
    key_type = _render(key_arg["type"])
    key_is_string = _named(key_arg["type"]) in ("String", "ID", "BigInt", "bigint")
    listing = field(root, "articles")
    article_type, author_type = _named(listing["type"]), _named(field(root, "authors")["type"])
    relation = next(
        (f["name"] for f in types[article_type]["fields"] if _named(f["type"]) == author_type and not _is_list(f["type"])),
        None,
    )
    if relation is None:
        raise ServerUnavailable(f"sluice serve: {article_type} has no field returning one {author_type}")
    where_type = _named(argument(listing, "where")["type"])
    eq_type = _render(input_field(_named(input_field(where_type, "category")["type"]), "_eq")["type"]).rstrip("!")
    order_type = _named(argument(listing, "order_by")["type"])
    direction_type = _named(input_field(order_type, "published_at")["type"])
    values = [v["name"] for v in types[direction_type].get("enumValues") or []]
    desc = next((v for v in values if v.lower() == "desc"), None)
    if desc is None:
        raise ServerUnavailable(f"sluice serve: ordering enum {direction_type} has no desc ({values})")
    argument(listing, "limit")

    def row(data: dict[str, Any]) -> tuple[str, str] | None:
        found = data["article_by_pk"]
        return None if found is None else (str(found["id"]), found["titre"])

    def rows(data: dict[str, Any]) -> list[tuple[str, str, str]]:
        return [(str(r["id"]), r["titre"], r[relation]["name"]) for r in data["articles"]]

    return Queries(
        by_pk=f"query ArticleByPk($id: {key_type}) {{ article_by_pk(id: $id) {{ id titre }} }}",
        by_pk_variables=lambda key: {"id": str(key) if key_is_string else key},
        by_pk_row=row,
        listing=(
            f"query ArticlesOfCategory($category: {eq_type}!) {{ articles(where: {{category: {{_eq: $category}}}}, "
            f"order_by: [{{published_at: {desc}}}], limit: {LIST_LIMIT}) {{ id titre {relation} {{ name }} }} }}"
        ),
        list_variables=lambda category: {"category": category},
        list_rows=rows,
    )


def answer_data(server: Server, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """The ``data`` of one request; ServerUnavailable when the answer carries errors."""
    answer = server.post(query, variables)
    if answer.get("errors") or answer.get("data") is None:
        raise ServerUnavailable(f"{server.name}: {query[:60]}... with {variables} answered errors: {answer.get('errors')}")
    data: dict[str, Any] = answer["data"]
    return data
