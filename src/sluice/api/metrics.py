"""Prometheus metrics of the data API (the process registry, served at ``/metrics`` of ``sluice serve``).

- ``sluice_api_requests_total{api, operation, role, status}``: GraphQL operations answered; ``operation``
  is the first root field (bounded by the schema; ``__schema`` for introspection, ``-`` when the request
  could not be read), ``status`` the HTTP status of the answer.
- ``sluice_api_errors_total{api, operation, role, code}``: refused or failed operations by error code.
- ``sluice_api_request_duration_seconds{api, operation}``: time to answer an operation, from the admitted
  request to the encoded answer (database time included).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

API_REQUESTS = Counter(
    "sluice_api_requests_total",
    "Data API operations answered, by API, operation, role and HTTP status.",
    ["api", "operation", "role", "status"],
)
API_ERRORS = Counter(
    "sluice_api_errors_total",
    "Data API operations refused or failed, by API, operation, role and error code.",
    ["api", "operation", "role", "code"],
)
API_DURATION = Histogram(
    "sluice_api_request_duration_seconds",
    "Time to answer a data API operation, by API and operation.",
    ["api", "operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def observe(api: str, operation: str, role: str, status: int, code: str | None, seconds: float) -> None:
    """Count one answered operation."""
    API_REQUESTS.labels(api, operation, role, str(status)).inc()
    API_DURATION.labels(api, operation).observe(seconds)
    if code is not None:
        API_ERRORS.labels(api, operation, role, code).inc()
