"""``sluice validate --live`` for the ``api:`` section: what only the databases can tell (tables and views that
patterns match, routed mutation tables, the columns ``api.roles`` names), each at the line of the entry at fault in
``sluice.yaml`` (the ``tables:`` item, the ``mutations:`` key, the ``roles:`` setting); and, as notes, the ``exclude:``
items that leave nothing out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sluice.api.settings import ApiSettings
from sluice.errors import ConfigError, SluiceError
from sluice.project.model import Origin


def live_check(
    settings: ApiSettings, connections: Mapping[str, str], root: Any, origin: Origin
) -> tuple[list[ConfigError], list[ConfigError]]:
    """``(problems, notes)`` of what needs the databases: each connection reachable, each ``tables`` pattern
    matching a table or view, each routed mutation's table present in its connection, each column ``roles`` names
    in its table (problems); each ``exclude`` pattern leaving out one of the tables ``tables`` selects (notes)."""
    from sluice.api.catalog import Catalog, matches, select_tables, unmatched
    from sluice.api.databases import Database
    from sluice.api.gate import DataApiError

    problems: list[ConfigError] = []
    notes: list[ConfigError] = []
    catalogs: dict[str, Catalog] = {}
    used = [s.connection for s in settings.sources] + list(settings.mutations.values())
    for name in dict.fromkeys(used):
        database = Database(name, connections[name], root, settings.limits.graphql.timeout_s)
        try:
            catalogs[name] = database.read_catalog()
        except DataApiError as exc:
            problems.append(ConfigError(f"api: {exc}", origin.file, origin.line))
        finally:
            database.close()
    for index, source in enumerate(settings.sources):
        catalog = catalogs.get(source.connection)
        if catalog is None:
            continue
        for pattern in unmatched(catalog, source.tables):
            message = f"api: tables: '{pattern}' matches no table or view of '{source.connection}'"
            at = origin.line_at("sources", index, "tables", source.tables.index(pattern))
            problems.append(ConfigError(message, origin.file, at))
        chosen = select_tables(catalog, source.tables, [])
        for item, pattern in enumerate(source.exclude):
            if not any(matches(pattern, table, catalog.default_schema) for table in chosen):
                message = (
                    f"api: exclude: '{pattern}' matches no table or view that tables: selects in '{source.connection}', "
                    "so it leaves nothing out; fix the name or pattern, or remove it"
                )
                notes.append(ConfigError(message, origin.file, origin.line_at("sources", index, "exclude", item)))
    for table, name in settings.mutations.items():
        catalog = catalogs.get(name)
        if catalog is None:
            continue
        schema, _, short = table.rpartition(".")
        if catalog.find(schema or catalog.default_schema, short) is None:
            at = origin.line_at("mutations", table)
            problems.append(ConfigError(f"api: mutations: '{name}' has no table '{table}' to write", origin.file, at))
    if len(catalogs) == len(dict.fromkeys(used)):
        problems += _permission_problems(settings, catalogs, origin)
    return problems, notes


def _permission_problems(settings: ApiSettings, catalogs: Mapping[str, Any], origin: Origin) -> list[ConfigError]:
    """The columns ``api.roles`` names that the databases' tables lack, each at its line in the file."""
    from sluice.api.model import build_model
    from sluice.api.permissions import permission_problems

    try:
        found = permission_problems(settings, build_model(settings, dict(catalogs)))
    except SluiceError as exc:  # a model the catalogs cannot give is reported by serve itself
        return [ConfigError(f"api: cannot build the data API from the databases: {exc}", origin.file, origin.line)]
    return [
        ConfigError(
            f"api: roles.{p.role}: {p.message}",
            origin.file,
            origin.line_at("roles", p.role, p.table, p.operation, p.setting),
        )
        for p in found
    ]
