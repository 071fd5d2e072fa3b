"""The checks of the ``api:`` security settings that ``sluice validate`` and ``sluice serve`` share.

:func:`settings_problems` builds what the gate would build from the settings alone (the JWT verifier with its
secret length and key files, the rate limits, the persisted-query allow-list) and collects every ConfigError
instead of stopping at the first, so ``sluice validate`` reports each with its file and line and
:func:`sluice.api.security.build_gate` refuses to start on the first one: what validate accepts, serve accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sluice.api.security.graphql_limits import PersistedQueries
from sluice.api.security.jwt_tokens import JwtVerifier
from sluice.api.security.rate import parse_limits, storage_options
from sluice.api.settings import ApiSettings
from sluice.errors import ConfigError


def settings_problems(settings: ApiSettings, project_dir: Path) -> list[ConfigError]:
    """Every problem of ``settings``' ``auth.jwt``, ``limits.rate`` and ``limits.graphql.persisted_queries_file``
    (files resolved against ``project_dir``), without connecting anywhere.

    Each message starts with the setting's dotted path (``api.auth.jwt.secret: ...``); see :func:`setting_path`.
    """
    checks: list[Callable[[], object]] = []
    jwt = settings.auth.jwt
    if jwt is not None:
        checks.append(lambda: JwtVerifier(jwt, project_dir))
    rate = settings.limits.rate
    for kind, text in (("key", rate.per_key), ("subject", rate.per_subject), ("address", rate.per_address)):
        checks.append(lambda kind=kind, text=text: parse_limits(kind, text))  # type: ignore[misc]
    checks.append(lambda: storage_options(rate.storage))
    persisted = settings.limits.graphql.persisted_queries_file
    if persisted:
        checks.append(lambda: PersistedQueries(project_dir / persisted))
    problems: list[ConfigError] = []
    for check in checks:
        try:
            check()
        except ConfigError as exc:
            problems.append(exc)
    return problems


def setting_path(problem: ConfigError) -> tuple[str, ...]:
    """The keys under ``api:`` a problem of :func:`settings_problems` names: ``("auth", "jwt", "secret")``."""
    head = problem.message.split(":", 1)[0].split(" ", 1)[0]
    parts = head.split(".")
    return tuple(parts[1:]) if parts[0] == "api" else ()
