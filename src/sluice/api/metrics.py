"""Prometheus metrics and log lines of the data API's requests (the process registry, served at ``/metrics``
of ``sluice serve``; listed in ``docs/metrics.md``, shown by ``deploy/grafana/dashboards/sluice-api.json``).

- ``sluice_api_requests_total{api, operation, role, status}``: requests answered. ``api`` is ``graphql``,
  ``rest`` or ``proxy`` (a gateway route); ``operation`` is GraphQL's first root field (bounded by the schema;
  ``__schema`` for introspection), REST's ``"<METHOD> <table>"`` (``"GET -"`` for an unknown table), or a
  gateway route's path; ``role`` the principal's role; ``status`` the HTTP status of the answer. A request
  refused before its operation or role is known (no credentials, a bad token, a rate limit on the address, a
  body that is not JSON) has ``operation`` and/or ``role`` :data:`UNKNOWN` (``-``), so clients cannot create
  series at will.
- ``sluice_api_errors_total{api, operation, role, code}``: the requests answered with an error code (the
  ``code`` of the JSON error: ``validation-failed``, ``rate-limited``, ``SLR205``...).
- ``sluice_api_request_duration_seconds{api, operation, role}``: seconds to answer, from the request's
  arrival in the handler to the encoded answer (database time included; for a gateway route, to the
  upstream's response headers). Buckets 0.5 ms to 10 s, the range of an API's answers (a time-out is 10 s
  by default, ``api.limits.graphql.timeout_s``).

Each request is also logged as one line on the ``sluice.api.requests`` logger at INFO: in JSON
(``--log-format json``) with the keys ``api``, ``operation``, ``role``, ``status``, ``code`` (errors only)
and ``duration_ms`` beside the standard ones. The line holds no credentials, no variable values, no query
text and no SQL: only the labels above. (The shape follows the access logs of Hasura's ``http-log``, reduced
to what the metrics already name.) ``api.log_requests: false`` turns the line off for a ``sluice serve``
(:func:`request_lines`): at thousands of requests per second, formatting and writing it was about a quarter
of the server's CPU for a primary-key query; the metrics stay.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import Counter, Histogram

UNKNOWN = "-"
"""The ``operation`` or ``role`` of a request refused before it was known."""

log = logging.getLogger("sluice.api.requests")

API_REQUESTS = Counter(
    "sluice_api_requests_total",
    "Data API requests answered, by API (graphql, rest, proxy), operation, role and HTTP status.",
    ["api", "operation", "role", "status"],
)
API_ERRORS = Counter(
    "sluice_api_errors_total",
    "Data API requests answered with an error, by API, operation, role and error code.",
    ["api", "operation", "role", "code"],
)
API_DURATION = Histogram(
    "sluice_api_request_duration_seconds",
    "Seconds to answer a data API request, by API, operation and role.",
    ["api", "operation", "role"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

_children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
"""The labelled children of API_REQUESTS and API_DURATION by (api, operation, role, status): a bounded set
(operations come from the schema, roles from the configuration)."""


def observe(api: str, operation: str, role: str, status: int, code: str | None, seconds: float) -> None:
    """Count one answered request (``status``: its HTTP status; ``code``: its error code, None on success;
    ``seconds``: the time to answer it) and log its line."""
    key = (api, operation, role, status)
    children = _children.get(key)
    if children is None:  # the labelled series, looked up once (labels() takes a lock and builds a tuple)
        children = (API_REQUESTS.labels(api, operation, role, str(status)), API_DURATION.labels(api, operation, role))
        _children[key] = children
    children[0].inc()
    children[1].observe(seconds)
    if code is not None:
        API_ERRORS.labels(api, operation, role, code).inc()
    if log.isEnabledFor(logging.INFO):
        fields: dict[str, object] = {"api": api, "operation": operation, "role": role, "status": status}
        if code is not None:
            fields["code"] = code
        fields["duration_ms"] = round(seconds * 1000, 3)
        text = f"{api} {operation} role={role} -> {status}" + (f" {code}" if code is not None else "")
        log.info("%s in %.1f ms", text, seconds * 1000, extra={"fields": fields})


@contextmanager
def request_lines(enabled: bool) -> Iterator[None]:
    """Within the block, the per-request lines are logged (``enabled``, as before) or not (``sluice.api.requests``
    set to WARNING, its level put back after); the metrics count every request either way."""
    if enabled:
        yield
        return
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)
