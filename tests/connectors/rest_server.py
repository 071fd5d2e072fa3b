"""A small JSON API on 127.0.0.1 (or another loopback ``host``) for the REST tests: every pagination style, auth, faults, drift.

``FakeApi`` serves ``records`` (a list of dicts, ``id`` 1..n) on:

- ``/offset?offset=&limit=`` -> ``{"data": {"items": [...]}, "meta": {"total": n}}`` (``/offset-open``: no total)
- ``/pages?page=&per_page=`` -> ``{"results": [...], "total_pages": p}`` (``/pages-open``: no total)
- ``/cursor?cursor=`` -> ``{"items": [...], "next_cursor": "c<offset>" | null}``
- ``/link?page=`` -> a bare array and a ``Link: <...>; rel="next"`` header
- ``/next?page=`` -> ``{"items": [...], "next": "/next?page=2" | null}`` (relative URLs)
- ``/loop`` -> ``{"items": [first], "next": "/loop", "next_cursor": "again"}``: pagination that loops
- ``/drift?page=`` -> the pages in ``drift`` (a list of record lists)
- ``/customers`` and ``/customers/<id>/orders`` -> parents and their children (``orders`` keyed by the id: an int,
  or the text of one that is not digits)
- any path in ``canned`` -> that body
- ``/changes?updated_since=`` -> records whose ``updated_at`` is greater (all when absent)

Each request is logged (path, query, headers). ``faults[path]`` is a list consumed one per request to that
path before the normal answer: ``(status, headers)`` answers that status, ``"timeout"`` waits ``slow_s``
first. ``auth`` set to ``("bearer", token)``, ``("header", name, key)``, ``("query", name, key)`` or
``("basic", user, password)`` answers 401 to requests without it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PAGE = 10


class FakeApi:
    def __init__(self, records: list[dict[str, Any]], host: str = "127.0.0.1") -> None:
        self.records = records
        self.host = host
        self.canned: dict[str, Any] = {}
        self.drift: list[list[dict[str, Any]]] = []
        self.customers: list[dict[str, Any]] = []
        self.orders: dict[int | str, list[dict[str, Any]]] = {}
        self.faults: dict[str, list[Any]] = {}
        self.auth: tuple[str, ...] | None = None
        self.slow_s = 1.0
        self.log: list[tuple[str, dict[str, str], dict[str, str]]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                api.handle(self)

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def requests_to(self, path: str) -> list[dict[str, str]]:
        """The queries of the requests made to ``path``, in order."""
        return [query for logged, query, _ in self.log if logged == path]

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(handler.path)
        path = parsed.path
        query = dict(urllib.parse.parse_qsl(parsed.query))
        headers = {key.lower(): value for key, value in handler.headers.items()}
        self.log.append((path, query, headers))
        pending = self.faults.get(path)
        if pending:
            fault = pending.pop(0)
            if fault == "timeout":
                time.sleep(self.slow_s)
            else:
                status, extra = fault
                return self.send(handler, status, {"error": "injected"}, extra)
        if not self.authorised(query, headers):
            return self.send(handler, 401, {"error": "unauthorised"})
        body, extra = self.answer(path, query)
        if body is None:
            return self.send(handler, 404, {"error": "not found"})
        return self.send(handler, 200, body, extra)

    def authorised(self, query: dict[str, str], headers: dict[str, str]) -> bool:
        if self.auth is None:
            return True
        kind = self.auth[0]
        if kind == "bearer":
            return headers.get("authorization") == f"Bearer {self.auth[1]}"
        if kind == "header":
            return headers.get(self.auth[1].lower()) == self.auth[2]
        if kind == "query":
            return query.get(self.auth[1]) == self.auth[2]
        expected = base64.b64encode(f"{self.auth[1]}:{self.auth[2]}".encode()).decode()
        return headers.get("authorization") == f"Basic {expected}"

    def answer(self, path: str, query: dict[str, str]) -> tuple[Any, dict[str, str]]:
        records = self.records
        if path in self.canned:
            return self.canned[path], {}
        if path in ("/offset", "/offset-open"):
            offset, limit = int(query.get("offset", 0)), int(query.get("limit", PAGE))
            body: dict[str, Any] = {"data": {"items": records[offset : offset + limit]}}
            if path == "/offset":
                body["meta"] = {"total": len(records)}
            return body, {}
        if path in ("/pages", "/pages-open"):
            page, size = int(query.get("page", 1)), int(query.get("per_page", PAGE))
            body = {"results": records[(page - 1) * size : page * size]}
            if path == "/pages":
                body["total_pages"] = -(-len(records) // size)
            return body, {}
        if path == "/cursor":
            start = int(query.get("cursor", "c0")[1:])
            more = start + PAGE < len(records)
            return {"items": records[start : start + PAGE], "next_cursor": f"c{start + PAGE}" if more else None}, {}
        if path == "/link":
            page = int(query.get("page", 1))
            chunk = records[(page - 1) * PAGE : page * PAGE]
            extra = {"Link": f'<{self.url}/link?page={page + 1}>; rel="next"'} if page * PAGE < len(records) else {}
            return chunk, extra
        if path == "/next":
            page = int(query.get("page", 1))
            more = page * PAGE < len(records)
            return {"items": records[(page - 1) * PAGE : page * PAGE], "next": f"/next?page={page + 1}" if more else None}, {}
        if path == "/loop":  # a broken API: the next link and the cursor point back to this page
            return {"items": records[:1], "next": "/loop", "next_cursor": "again"}, {}
        if path == "/drift":
            page = int(query.get("page", 1))
            return {"items": self.drift[page - 1] if page <= len(self.drift) else []}, {}
        if path == "/customers":
            return {"customers": self.customers}, {}
        if path.startswith("/customers/") and path.endswith("/orders"):
            key = urllib.parse.unquote(path.split("/")[2])
            return self.orders.get(int(key) if key.isdigit() else key, []), {}
        if path == "/changes":
            since = query.get("updated_since")
            return [r for r in records if since is None or r["updated_at"] > since], {}
        return None, {}

    def send(self, handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            handler.wfile.write(data)
