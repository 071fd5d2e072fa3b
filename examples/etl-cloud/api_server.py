"""The shop's JSON API, served on the loopback interface for the example (``run.py`` starts it).

    python examples/etl-cloud/api_server.py [--port 0]     # prints the URL it listens on, then serves

- ``GET /customers?offset=0&limit=10`` -> ``{"data": {"items": [...]}, "meta": {"total": 41}}``, HTTP Basic
  auth (user ``etl``, password ``ETL_API_PASSWORD``, default ``etl-secret``);
- ``GET /orders?page=1&page_size=25`` -> ``{"orders": [...], "page": 1, "total_pages": 10}``, a bearer token
  (``ETL_API_TOKEN``, default ``etl-token``).

Anything else is 404; a missing or wrong credential is 401.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shop_data

USER = "etl"
CUSTOMERS = shop_data.customers()
ORDERS = shop_data.orders()


class Handler(BaseHTTPRequestHandler):
    password = os.environ.get("ETL_API_PASSWORD", "etl-secret")
    token = os.environ.get("ETL_API_TOKEN", "etl-token")

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/customers":
            expected = "Basic " + base64.b64encode(f"{USER}:{self.password}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                self.send(401, {"error": "basic authentication required"}, {"WWW-Authenticate": 'Basic realm="shop"'})
                return
            offset, limit = int(query.get("offset", 0)), min(int(query.get("limit", 10)), 100)
            items = CUSTOMERS[offset : offset + limit]
            self.send(200, {"data": {"items": items}, "meta": {"total": len(CUSTOMERS), "offset": offset}})
        elif url.path == "/orders":
            if self.headers.get("Authorization") != f"Bearer {self.token}":
                self.send(401, {"error": "bearer token required"}, {"WWW-Authenticate": 'Bearer realm="shop"'})
                return
            page, size = int(query.get("page", 1)), min(int(query.get("page_size", 25)), 100)
            pages = (len(ORDERS) + size - 1) // size
            self.send(200, {"orders": ORDERS[(page - 1) * size : page * size], "page": page, "total_pages": pages})
        else:
            self.send(404, {"error": f"no such endpoint: {url.path}"})

    def send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the example prints what landed, not each request."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 (default): a free port")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
