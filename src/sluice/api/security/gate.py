"""The :class:`~sluice.api.gate.Gate` of one ``api:`` section: authentication, rate limits, document limits.

Order of :meth:`SecurityGate.admit`: the client address's limit first (so a client guessing keys or tokens is
slowed down like any other), then authentication, then the API key's limit and the subject's limit (a JWT's
``sub`` or an API key's owner: an owner's keys share the subject's budget). Each refusal is counted in
``sluice_api_auth_failures_total`` or ``sluice_api_rate_limited_total`` (:mod:`sluice.api.security.metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sluice.api.gate import DataApiError
from sluice.api.principal import Principal
from sluice.api.security import metrics
from sluice.api.security.auth import Authenticator
from sluice.api.security.graphql_limits import PersistedQueries, limits_rule
from sluice.api.security.keys import KeyStore
from sluice.api.security.rate import RateLimiter
from sluice.api.settings import ApiSettings

UNAUTHENTICATED = "-"
"""The ``role`` label of requests refused by the address limit, counted before authentication."""


class SecurityGate:
    """Implements :class:`sluice.api.gate.Gate`. Build it with :func:`sluice.api.security.build_gate`.

    Safe to call from several threads. :meth:`admit` may block on the key store or Redis (a local round trip):
    call it from a worker thread in async handlers (``anyio.to_thread.run_sync``), as the gateway routes do.
    """

    def __init__(self, settings: ApiSettings, project_dir: Path, keys: KeyStore | None, *, key_cache_s: float = 1.0) -> None:
        self.settings = settings
        self.keys = keys
        self.authenticator = Authenticator(settings, project_dir, keys, key_cache_s)
        self.rates = RateLimiter(settings.limits.rate)
        limits = settings.limits.graphql
        self.persisted = PersistedQueries(project_dir / limits.persisted_queries_file) if limits.persisted_queries_file else None
        self._rules: list[Any] = [limits_rule(limits.max_depth, limits.max_cost, limits.max_rows)]
        if self.persisted is not None:
            self._rules.append(self.persisted.rule())
        roles = {*settings.roles, settings.admin_role, UNAUTHENTICATED}
        if settings.auth.anon_role:
            roles.add(settings.auth.anon_role)
        metrics.register(sorted(roles), [route.path for route in settings.proxies])

    def admit(self, headers: Mapping[str, str], address: str, operation: str) -> Principal:
        """See :meth:`sluice.api.gate.Gate.admit`: the principal, or DataApiError 400/401/403/429."""
        if self.rates.enabled:
            self.rates.hit("address", address, operation=operation, role=UNAUTHENTICATED)
        try:
            principal = self.authenticator.authenticate(headers, address)
        except DataApiError as exc:
            metrics.AUTH_FAILURES.labels(operation, exc.code).inc()
            raise
        if self.rates.enabled:
            if principal.key_id is not None:
                self.rates.hit("key", principal.key_id, operation=operation, role=principal.role)
            if principal.subject is not None:
                self.rates.hit("subject", principal.subject, operation=operation, role=principal.role)
        return principal

    def admit_nowait(self, headers: Mapping[str, str], address: str, operation: str) -> Principal | None:
        """:meth:`admit` when it cannot block, for an event loop: a request without credentials (the anonymous
        role; no key store, no token) while rate limits count in memory or are off; None otherwise (call
        :meth:`admit` from a worker thread). Raises what :meth:`admit` raises."""
        if "authorization" in headers or "x-api-key" in headers:
            return None
        if self.rates.enabled and not self.rates.storage_url.startswith("memory"):
            return None
        return self.admit(headers, address, operation)

    def graphql_rules(self) -> list[Any]:
        """The depth and cost rule, and the persisted-query rule when a file is configured (graphql-core
        ``ValidationRule`` classes; see :mod:`sluice.api.security.graphql_limits`)."""
        return list(self._rules)

    def check_batch(self, operations: int) -> None:
        """Raise DataApiError 400 ``batch-too-large`` when ``operations`` exceeds ``api.limits.graphql.max_batch``."""
        most = self.settings.limits.graphql.max_batch
        if operations > most:
            raise DataApiError(
                f"a batch may hold at most {most} operations; this one holds {operations}", status=400, code="batch-too-large"
            )

    def persisted_document(self, query_id: str) -> str | None:
        """The persisted document of ``query_id`` (None when unknown or no allow-list is configured)."""
        return None if self.persisted is None else self.persisted.document(query_id)

    def close(self) -> None:
        """Release the key store's connections."""
        if self.keys is not None:
            self.keys.close()
