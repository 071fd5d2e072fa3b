"""Prometheus metrics of the data API's gate and gateway routes (``sluice_api_`` prefix, units in names).

Same registry (prometheus-client's default) and conventions as :mod:`sluice.observability.metrics`, exposed at
``GET /metrics`` of ``sluice serve``; listed in ``docs/metrics.md``. Every series of a configured ``api:``
section is created at zero by :func:`register` so dashboards show it before the first refusal.

Labels: ``operation`` (what the handler asked for: ``graphql``, ``rest``, ``subscription``, ``proxy``),
``code`` (the refusal's code, :data:`AUTH_CODES`), ``role``, ``limit`` (``key``, ``subject``, ``address``),
``route`` (a proxy route's path), ``outcome`` (``ok``, ``timeout``, ``unreachable``).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Histogram

OPERATIONS = ("graphql", "rest", "subscription", "proxy")
AUTH_CODES = (
    "credentials-required",
    "invalid-request",
    "invalid-token",
    "expired-token",
    "token-not-yet-valid",
    "wrong-audience",
    "wrong-issuer",
    "unknown-role",
    "unknown-key",
    "revoked-key",
    "expired-key",
    "forbidden-role",
)
LIMIT_KINDS = ("key", "subject", "address")
PROXY_OUTCOMES = ("ok", "timeout", "unreachable")

AUTH_FAILURES = Counter(
    "sluice_api_auth_failures_total", "Data API requests refused by authentication, by refusal code.", ["operation", "code"]
)
RATE_LIMITED = Counter(
    "sluice_api_rate_limited_total",
    "Data API requests refused with 429, by the limit they crossed (key, subject or address).",
    ["operation", "role", "limit"],
)
RATE_LIMIT_ERRORS = Counter(
    "sluice_api_rate_limit_storage_errors_total",
    "Requests let through without counting because the rate-limit storage (Redis) failed.",
)
PROXY_REQUESTS = Counter(
    "sluice_api_proxy_requests_total", "Requests forwarded by a gateway route, by outcome.", ["route", "outcome"]
)
PROXY_DURATION = Histogram(
    "sluice_api_proxy_upstream_seconds",
    "Seconds from forwarding a request to the upstream's response headers.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def register(roles: Iterable[str], routes: Iterable[str]) -> None:
    """Create the series of ``roles`` (with the anonymous and admin roles) and proxy ``routes`` at zero."""
    roles = list(roles)
    for operation in OPERATIONS:
        for code in AUTH_CODES:
            AUTH_FAILURES.labels(operation, code)
        for role in roles:
            for kind in LIMIT_KINDS:
                RATE_LIMITED.labels(operation, role, kind)
    for route in routes:
        PROXY_DURATION.labels(route)
        for outcome in PROXY_OUTCOMES:
            PROXY_REQUESTS.labels(route, outcome)
