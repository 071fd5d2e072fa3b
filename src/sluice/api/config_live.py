"""``sluice validate --live`` for the ``api:`` section: what only the databases can tell (tables and views that
patterns match, routed mutation tables, the columns ``api.roles`` names), each at its line of ``sluice.yaml``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sluice.api.settings import ApiSettings
from sluice.errors import ConfigError, SluiceError


def live_problems(
    settings: ApiSettings, connections: Mapping[str, str], root: Any, file: str, line: int | None
) -> list[ConfigError]:
    """What needs the databases: each connection reachable, each ``tables`` pattern matching a table or
    view, each routed mutation's table present in its connection."""
    from sluice.api.catalog import Catalog, unmatched
    from sluice.api.databases import Database
    from sluice.api.gate import DataApiError

    problems: list[ConfigError] = []
    catalogs: dict[str, Catalog] = {}
    used = [s.connection for s in settings.sources] + list(settings.mutations.values())
    for name in dict.fromkeys(used):
        database = Database(name, connections[name], root, settings.limits.graphql.timeout_s)
        try:
            catalogs[name] = database.read_catalog()
        except DataApiError as exc:
            problems.append(ConfigError(f"api: {exc}", file, line))
        finally:
            database.close()
    for source in settings.sources:
        catalog = catalogs.get(source.connection)
        if catalog is not None:
            for pattern in unmatched(catalog, source.tables):
                problems.append(
                    ConfigError(f"api: tables: '{pattern}' matches no table or view of '{source.connection}'", file, line)
                )
    for table, name in settings.mutations.items():
        catalog = catalogs.get(name)
        if catalog is None:
            continue
        schema, _, short = table.rpartition(".")
        if catalog.find(schema or catalog.default_schema, short) is None:
            problems.append(ConfigError(f"api: mutations: '{name}' has no table '{table}' to write", file, line))
    if len(catalogs) == len(dict.fromkeys(used)):
        problems += _permission_problems(settings, catalogs, file, line)
    return problems


def _permission_problems(settings: ApiSettings, catalogs: Mapping[str, Any], file: str, line: int | None) -> list[ConfigError]:
    """The columns ``api.roles`` names that the databases' tables lack, each at its line in ``file``."""
    from sluice.api.model import build_model
    from sluice.api.permissions import permission_problems
    from sluice.project.yaml_tree import load_yaml, read_text

    try:
        found = permission_problems(settings, build_model(settings, dict(catalogs)))
    except SluiceError as exc:  # a model the catalogs cannot give is reported by serve itself
        return [ConfigError(f"api: cannot build the data API from the databases: {exc}", file, line)]
    if not found:
        return []
    try:
        raw: Any = load_yaml(read_text(Path(file)), file).get("api")
    except (OSError, ConfigError, AttributeError):
        raw = None
    problems = []
    for problem in found:
        node, where = raw, line
        for step in ("roles", problem.role, problem.table, problem.operation, problem.setting):
            if not isinstance(node, Mapping):
                break
            where = getattr(node, "key_lines", {}).get(step, where)
            node = node.get(step)
        problems.append(ConfigError(f"api: roles.{problem.role}: {problem.message}", file, where))
    return problems
