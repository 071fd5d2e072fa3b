"""What stands in front of every data-API request: authentication, rate limits and document limits.

:class:`Gate` is the contract between the request handlers (GraphQL, REST, subscriptions, proxies) and the
security part (``sluice.api.security``). A handler calls :meth:`Gate.admit` first and answers the
:class:`DataApiError` it raises as JSON ``{"errors": [{"message": ..., "extensions": {"code": ...}}]}`` with
its ``status`` and ``headers`` (``Retry-After``, ``RateLimit-*``, ``WWW-Authenticate``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sluice.api.principal import Principal
from sluice.errors import SluiceError


class DataApiError(SluiceError):
    """A refused data-API request: ``status`` (HTTP), ``code`` (stable, e.g. ``invalid-jwt``,
    ``rate-limited``, ``permission-denied``, ``validation-failed``) and response ``headers``.
    The message is safe to show a client: never SQL text or a stack trace."""

    def __init__(self, message: str, *, status: int = 400, code: str = "bad-request", headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers: dict[str, str] = dict(headers or {})


class Gate(Protocol):
    """Authentication and limits of one served ``api:`` section.

    A gate may also offer ``admit_nowait(headers, address, operation) -> Principal | None``: :meth:`admit`
    when it cannot block (None otherwise), which lets the GraphQL fast path answer on the event loop
    (:mod:`sluice.api.async_pg`); :class:`~sluice.api.security.gate.SecurityGate` does."""

    def admit(self, headers: Mapping[str, str], address: str, operation: str) -> Principal:
        """The request's :class:`Principal`, after its rate limits were counted.

        ``headers``: the request headers (lower-case names); ``address``: the client IP; ``operation``:
        what is asked (``graphql``, ``rest``, ``subscription``, ``proxy``), for metrics.
        Raises :class:`DataApiError` 401 (bad or expired credentials), 403 (role unknown or disabled) or
        429 (over a rate limit, with ``Retry-After`` and ``RateLimit-*`` headers).
        """
        ...

    def graphql_rules(self) -> list[Any]:
        """graphql-core validation rules (``type[ASTValidationRule]``) enforcing depth, cost and persisted
        queries; run with the schema's standard rules on each new document."""
        ...

    def check_batch(self, operations: int) -> None:
        """Raise :class:`DataApiError` 400 when a batched request carries more than ``max_batch`` operations."""
        ...
