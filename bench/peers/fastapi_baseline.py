"""The API benchmark's peer: a minimal FastAPI app on uvicorn answering ``GET /runs/{run_id}`` from memory.

``/runs/{run_id}`` sends the bytes of BODY_FILE as they are (what serving costs without building the
answer); ``/dict/runs/{run_id}`` returns the same JSON as a dict that FastAPI encodes on every request
(what a plain FastAPI endpoint costs when the data is already in memory); ``/gzip/runs/{run_id}`` sends the
bytes through Starlette's ``GZipMiddleware`` (what a plain FastAPI app does for clients that accept gzip).

    python bench/peers/fastapi_baseline.py BODY_FILE --port 8001
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Response
from starlette.middleware.gzip import GZipMiddleware


def make_app(body: bytes) -> FastAPI:
    app = FastAPI()
    as_dict = json.loads(body)

    @app.get("/runs/{run_id}")
    async def run_bytes(run_id: str) -> Response:
        return Response(content=body, media_type="application/json")

    @app.get("/dict/runs/{run_id}")
    async def run_dict(run_id: str) -> dict[str, Any]:
        return as_dict  # type: ignore[no-any-return]

    gzipped = FastAPI()
    gzipped.add_middleware(GZipMiddleware)

    @gzipped.get("/runs/{run_id}")
    async def run_gzip(run_id: str) -> Response:
        return Response(content=body, media_type="application/json")

    app.mount("/gzip", gzipped)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("body", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--access-log", action="store_true", help="log every request, as uvicorn does by default")
    args = parser.parse_args()
    uvicorn.run(make_app(args.body.read_bytes()), host=args.host, port=args.port, access_log=args.access_log, log_level="warning")


if __name__ == "__main__":
    main()
