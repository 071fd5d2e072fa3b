"""A tiny FastAPI app behind the gate, for tests that need separate server processes.

    python tiny_app.py FD SETTINGS_JSON PROJECT_DIR STATE_URL

serves, on the listening socket FD (inherited), ``GET /whoami``: the principal as JSON, or the gate's refusal
as JSON with its status and headers; and the ``api.proxies`` routes. SETTINGS_JSON holds the sections given
to ``support.api_settings``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from sluice.api.gate import DataApiError
from sluice.api.security import build_gate
from sluice.api.security.proxy import error_response, proxy_routes


def make_app(sections: dict[str, object], project_dir: Path, state_url: str) -> FastAPI:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from support import api_settings

    settings = api_settings(**sections)
    gate = build_gate(settings, project_dir, state_url)
    app = FastAPI()

    @app.get("/whoami")
    def whoami(request: Request) -> Response:
        try:
            principal = gate.admit(dict(request.headers), request.client.host if request.client else "", "rest")
        except DataApiError as exc:
            return error_response(exc)
        return JSONResponse({"role": principal.role, "subject": principal.subject, "key_id": principal.key_id})

    app.include_router(proxy_routes(settings, gate))
    return app


if __name__ == "__main__":
    fd, sections, folder, state = int(sys.argv[1]), json.loads(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    uvicorn.run(make_app(sections, folder, state), fd=fd, log_level="warning")
