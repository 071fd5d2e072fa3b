"""Security and limits of the data API (docs/api/security.md): API keys, JWT, roles, rate limits, GraphQL
document limits and gateway routes.

- :func:`build_gate` gives the :class:`~sluice.api.gate.Gate` that ``sluice serve`` puts in front of every
  data-API request.
- :func:`sluice.api.security.proxy.proxy_routes` gives the gateway routes of ``api.proxies``.
- :mod:`sluice.api.security.keys` makes, stores and checks API keys (``sluice api-key``).
"""

from __future__ import annotations

from pathlib import Path

from sluice.api.gate import Gate
from sluice.api.security.checks import settings_problems
from sluice.api.security.gate import SecurityGate
from sluice.api.settings import ApiSettings


def build_gate(settings: ApiSettings, project_dir: Path, state_url: str) -> Gate:
    """The gate of ``settings`` (the ``api:`` section) for the project in ``project_dir``.

    ``project_dir`` resolves relative key and persisted-query files; ``state_url`` is the project's state store
    (``sqlite:///...`` or ``postgresql://...``), where API keys are kept (opened only when
    ``api.auth.api_keys`` is true). The settings are checked first by :func:`settings_problems`, the checks
    ``sluice validate`` runs. Raises ConfigError (one line naming the setting) for unusable settings and
    StateError when the state store cannot be opened.
    """
    problems = settings_problems(settings, project_dir)
    if problems:
        raise problems[0]
    keys = None
    if settings.auth.api_keys:
        from sluice.api.security.keys import open_key_store

        keys = open_key_store(state_url, project_dir)
    try:
        return SecurityGate(settings, project_dir, keys)
    except BaseException:
        if keys is not None:
            keys.close()
        raise


__all__ = ["SecurityGate", "build_gate", "settings_problems"]
