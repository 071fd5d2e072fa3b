"""The :class:`~sluice.api.gate.Gate` a served ``api:`` uses.

The production gate is ``sluice.api.security.build_gate(settings, project_dir, state_url) -> Gate`` (API keys,
JWT, rate limits, document limits). When that package is not part of the installation, :class:`AnonymousGate`
stands in and says so in the log: requests without credentials get ``auth.anon_role`` (a 401 when it is
null), requests with credentials are refused with 401 (they cannot be checked), and batches are limited to
``limits.graphql.max_batch``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sluice.api.gate import DataApiError, Gate
from sluice.api.principal import Principal
from sluice.api.settings import ApiSettings

log = logging.getLogger("sluice.api")
SECURITY_MODULE = "sluice.api.security"
CREDENTIAL_HEADERS = ("authorization", "x-api-key")


class AnonymousGate:
    """Only the anonymous role, no credentials checked (see the module docstring)."""

    def __init__(self, settings: ApiSettings) -> None:
        self.anon_role = settings.auth.anon_role
        self.max_batch = settings.limits.graphql.max_batch

    def admit(self, headers: Mapping[str, str], address: str, operation: str) -> Principal:
        if any(headers.get(name) for name in CREDENTIAL_HEADERS):
            raise DataApiError(
                "credentials cannot be checked: this installation has no sluice.api.security", status=401, code="unauthenticated"
            )
        if self.anon_role is None:
            raise DataApiError("credentials are required", status=401, code="unauthenticated")
        return Principal(role=self.anon_role, address=address)

    def graphql_rules(self) -> list[Any]:
        return []

    def check_batch(self, operations: int) -> None:
        if operations > self.max_batch:
            raise DataApiError(
                f"a batch may hold at most {self.max_batch} operations, this one holds {operations}", code="batch-too-large"
            )


def build_gate(settings: ApiSettings, project_dir: Path, state_url: str) -> Gate:
    """The production gate when ``sluice.api.security`` is installed, else :class:`AnonymousGate` (logged)."""
    try:
        module = importlib.import_module(SECURITY_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name not in (SECURITY_MODULE, "sluice.api"):
            raise
        log.warning(
            "data API: %s is not installed; only the anonymous role '%s' is served and credentials are refused",
            SECURITY_MODULE,
            settings.auth.anon_role,
        )
        return AnonymousGate(settings)
    gate: Gate = module.build_gate(settings, project_dir, state_url)
    return gate
