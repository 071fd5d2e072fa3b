"""The data API's HTTP routes in ``sluice serve``'s app: GraphQL at ``api.graphql_path`` and its GraphiQL page.

- ``POST <path>``: a JSON body ``{"query", "variables", "operationName"}`` or a list of them (a batch), or
  ``application/graphql`` text; ``GET <path>?query=...&variables=...``: queries only (a mutation is a 405).
- ``Accept: text/event-stream`` (POST or GET): Server-Sent Events, and a WebSocket at ``<path>``:
  subscriptions (:mod:`sluice.api.subscriptions`), when ``sluice serve`` mounts them;
- ``GET <path>`` from a browser (``Accept: text/html``, no ``query``): GraphiQL, served from
  ``sluice/api/static`` (GraphiQL 3.9, React 18, vendored: it works offline).

Every request passes :meth:`Gate.admit` first; its refusals keep their status and headers (401, 403, 429
with ``Retry-After``). Handlers run the blocking database work in the thread pool. Refusals before the
operation is read (the gate's, a body too large or not JSON) are counted and logged like answered operations,
with operation ``-`` (:mod:`sluice.api.metrics`). The gate and the request run in one worker thread
(one hop from the event loop per request). A bug is a 500 in the same ``{"errors": [...]}`` shape with
code ``internal`` (its traceback logged, never sent).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse, Response

from sluice.api import metrics
from sluice.api.execute import Answer, answer_error, run_request
from sluice.api.gate import DataApiError
from sluice.api.nesting import too_deep
from sluice.api.service import DataApi

log = logging.getLogger("sluice.api")
STATIC = Path(__file__).with_name("static")
INTERNAL = "internal error; the server log has the details (this is a bug, please report it)"
MAX_BODY_BYTES = 1024 * 1024

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>GraphiQL · Sluice</title>
<style>body {{ margin: 0; height: 100vh; }} #graphiql {{ height: 100vh; }}</style>
<link rel="stylesheet" href="{assets}/graphiql.min.css">
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script src="{assets}/react.production.min.js"></script>
<script src="{assets}/react-dom.production.min.js"></script>
<script src="{assets}/graphiql.min.js"></script>
<script>
  // Queries and mutations: GraphiQL's own fetcher. Subscriptions: the same endpoint over Server-Sent Events
  // (graphql-sse, distinct connections mode: `event: next` / `event: complete`), read with fetch(), so no
  // WebSocket client library is needed and the page keeps working offline.
  const endpoint = {endpoint};
  const http = GraphiQL.createFetcher({{ url: endpoint }});
  function isSubscription(params) {{
    const text = String(params.query || "").replace(/#[^\n]*/g, "");
    const pattern = /\b(query|mutation|subscription)\b\s*([_A-Za-z][_0-9A-Za-z]*)?/g;
    for (let m = pattern.exec(text); m; m = pattern.exec(text)) {{
      if (!params.operationName || m[2] === params.operationName) return m[1] === "subscription";
    }}
    return false;
  }}
  async function* sse(params, options) {{
    const controller = new AbortController();
    try {{
      const extra = (options && options.headers) || {{}};
      const headers = {{ "content-type": "application/json", accept: "text/event-stream", ...extra }};
      const body = JSON.stringify(params);
      const response = await fetch(endpoint, {{ method: "POST", headers, body, signal: controller.signal }});
      if (!(response.headers.get("content-type") || "").startsWith("text/event-stream")) {{
        yield await response.json();  // refused by the gate (401, 403, 429): a plain JSON answer
        return;
      }}
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {{
        const {{ value, done }} = await reader.read();
        if (done) return;
        buffer += value.replace(/\r\n/g, "\n");
        for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {{
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = "message", data = "";
          for (const line of block.split("\n")) {{
            if (line.startsWith("event:")) event = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trim();
          }}
          if (event === "complete") return;
          if (event === "next" && data) yield JSON.parse(data);
        }}
      }}
    }} finally {{
      controller.abort();  // GraphiQL stopped the subscription (or it ended): close the stream
    }}
  }}
  const fetcher = (params, options) => (isSubscription(params) ? sse(params, options) : http(params, options));
  const root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(React.createElement(GraphiQL, {{ fetcher, defaultEditorToolsVisibility: true }}));
</script>
</body>
</html>
"""


def _respond(answer: Answer) -> Response:
    return Response(answer.body, status_code=answer.status, media_type="application/json", headers=answer.headers)


def _guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` answering a bug (an unexpected exception) with the data API's own 500 shape,
    ``{"errors": [{"message", "extensions": {"code": "internal"}}]}``, its traceback logged."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception:
            log.exception("data API: %s %s failed", request.method, request.url.path)
            return _respond(answer_error(DataApiError(INTERNAL, status=500, code="internal")))

    return endpoint


def _headers(request: Request) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


def admit_and_run(api: DataApi, headers: dict[str, str], address: str, body: Any, method: str, started: float) -> Answer:
    """The gate, then the request (blocking: run it in a worker thread). ``headers``: lower-case names;
    ``started``: ``time.perf_counter()`` at the request's arrival (its duration in the metrics)."""
    try:
        principal = api.gate.admit(headers, address, "graphql")
    except DataApiError as exc:
        metrics.observe(api.name, metrics.UNKNOWN, metrics.UNKNOWN, exc.status, exc.code, time.perf_counter() - started)
        return answer_error(exc)
    return run_request(api, body, principal, method)


def mount_api(app: FastAPI, api: DataApi, events: Callable[[Request, Any], Awaitable[Response]] | None = None) -> None:
    """Add the GraphQL routes of ``api`` to ``app``. ``events``: answers the requests that ask for
    ``Accept: text/event-stream`` (subscriptions over SSE, :mod:`sluice.api.subscriptions.sse`)."""
    path = api.settings.graphql_path.rstrip("/") or "/graphql"
    assets = f"{path}/assets"
    app.mount(assets, StaticFiles(directory=STATIC, check_dir=False), name="graphiql-assets")

    def refused(exc: DataApiError, started: float) -> Response:
        metrics.observe(api.name, metrics.UNKNOWN, metrics.UNKNOWN, exc.status, exc.code, time.perf_counter() - started)
        return _respond(answer_error(exc))

    async def answer(request: Request, body: Any, method: str, started: float) -> Response:
        # One hop to a worker thread for the gate (it may wait on Redis or the key store) and the database.
        address = request.client.host if request.client else ""
        return _respond(await anyio.to_thread.run_sync(admit_and_run, api, _headers(request), address, body, method, started))

    async def post(request: Request) -> Response:
        started = time.perf_counter()
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return refused(DataApiError("the request body is larger than 1 MiB", status=413, code="too-large"), started)
        if request.headers.get("content-type", "").startswith("application/graphql"):
            body: Any = {"query": raw.decode("utf-8", "replace")}
        else:
            try:
                body = json.loads(raw)
            except ValueError:
                return refused(DataApiError("the body is not JSON", code="bad-request"), started)
            except RecursionError:
                return refused(too_deep("request body"), started)
        if events is not None and "text/event-stream" in request.headers.get("accept", ""):
            return await events(request, body)
        return await answer(request, body, "POST", started)

    async def get(request: Request) -> Response:
        started = time.perf_counter()
        params = request.query_params
        if "query" not in params:
            if "text/html" in request.headers.get("accept", ""):
                return HTMLResponse(PAGE.format(assets=assets, endpoint=json.dumps(path)))
            return refused(DataApiError("give the document in ?query=", code="bad-request"), started)
        body = {key: params[key] for key in ("query", "variables", "operationName") if key in params}
        if events is not None and "text/event-stream" in request.headers.get("accept", ""):
            return await events(request, body)
        return await answer(request, body, "GET", started)

    app.add_api_route(path, _guarded(post), methods=["POST"], include_in_schema=False)
    from sluice.api.http_fast import GraphQLFastPath
    from sluice.server.fast_paths import install

    install(app, GraphQLFastPath(None, api, path), GraphQLFastPath, api=api, path=path)
    app.add_api_route(path, _guarded(get), methods=["GET"], include_in_schema=False)
