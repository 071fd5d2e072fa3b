"""Reading the ``api:`` section of ``sluice.yaml`` with a line for every problem.

Every mapping of the section, at any depth (sources, operations, roles -> table -> select/insert/...,
auth, limits, proxies), is checked against its structure in :mod:`sluice.api.settings`, so an unknown key
or a wrong value is reported at its own line. Then what the file alone can tell: connections that exist
and are PostgreSQL, MariaDB/MySQL or SQLite, table names (in ``mutations``, ``operations``, ``roles``) that a
source's ``tables`` patterns cover, operation names that are GraphQL names and unique, proxy roles that
are defined, and a ``graphql_path`` that does not hide a route of the control API.
:func:`live_problems` adds what needs the databases (``sluice validate --live``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import msgspec

from sluice.api.settings import ApiSettings
from sluice.errors import ConfigError, did_you_mean
from sluice.plugins.base import Settings
from sluice.plugins.options import convert_options
from sluice.urls import connection_scheme

Problem = Callable[[str, "int | None"], None]
SCHEMES = ("postgresql", "mysql", "sqlite")
CONTROL_ROUTES = (
    "/orchestrate",
    "/runs",
    "/objects",
    "/events",
    "/health",
    "/metrics",
    "/docs",
    "/openapi.json",
    "/static",
    "/syncs",
    "/redoc",
)
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")
ORIGIN = re.compile(r"https?://(\*\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
"""An origin of ``api.cors.allow_origins``: scheme, host (``*.`` before it: any subdomain) and optional port."""


def _strip(tp: Any) -> Any:
    """``tp`` without ``Annotated`` and ``| None``."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _nested(tp: Any) -> bool:
    tp = _strip(tp)
    if isinstance(tp, type) and issubclass(tp, Settings):
        return True
    origin = get_origin(tp)
    if origin is list:
        return _nested(get_args(tp)[0])
    if origin is dict:
        return _nested(get_args(tp)[1])
    return False


def _walk(tp: Any, raw: Any, label: str, line: int | None, file: str, problems: list[ConfigError]) -> None:
    tp = _strip(tp)
    where = getattr(raw, "line", None) or line
    if isinstance(tp, type) and issubclass(tp, Settings):
        if not isinstance(raw, Mapping):
            problems.append(ConfigError(f"{label} must be a mapping, got {raw!r}", file, line))
            return
        fields = {f.encode_name: f.type for f in msgspec.structs.fields(tp)}
        inner = tuple(name for name, t in fields.items() if _nested(t) and name in raw and raw[name] is not None)
        key_lines = getattr(raw, "key_lines", {})
        for key, dup_line in getattr(raw, "duplicates", []):
            problems.append(ConfigError(f"{label}: key '{key}' is given twice; keep one", file, dup_line))
        _, found = convert_options(tp, raw, label=label, file=file, line=where, key_lines=key_lines, ignore=inner, what="key")
        # the nested keys left out are checked below; the structure without them may miss a required one
        skipped = {f"{label}: object missing required field {name}" for name in inner}
        problems.extend(p for p in found if p.message not in skipped)
        for name in inner:
            _walk(fields[name], raw[name], f"{label}.{name}", key_lines.get(name, where), file, problems)
        return
    origin = get_origin(tp)
    if origin is list:
        if not isinstance(raw, list):
            problems.append(ConfigError(f"{label} must be a list, got {raw!r}", file, line))
            return
        for index, item in enumerate(raw):
            _walk(get_args(tp)[0], item, f"{label}[{index}]", getattr(item, "line", None) or line, file, problems)
    elif origin is dict:
        if not isinstance(raw, Mapping):
            problems.append(ConfigError(f"{label} must be a mapping, got {raw!r}", file, line))
            return
        key_lines = getattr(raw, "key_lines", {})
        for key, value in raw.items():
            _walk(get_args(tp)[1], value, f"{label}.{key}", key_lines.get(str(key), where), file, problems)


def _covered(name: str, patterns: list[str]) -> bool:
    short = name.rpartition(".")[2]
    return any(fnmatchcase(name if "." in p else short, p) for p in patterns)


def read_api(
    raw: Any,
    plain: Any,
    file: str,
    line: int | None,
    connections: Mapping[str, str],
    syncs: Collection[str] | None = None,
    project_dir: Path | None = None,
) -> tuple[ApiSettings | None, list[ConfigError]]:
    """The checked ``api:`` section (``raw``: its YAML mapping with lines; ``plain``: the same as plain values;
    ``connections``: the project's connection names and URLs; ``syncs``: the names of its ``syncs:``, None to
    leave ``sync_mutations``' sync names unchecked; ``project_dir``: where relative key and persisted-query files
    are, by default ``file``'s folder), and every problem found, including those of
    :func:`sluice.api.security.settings_problems` (the checks ``sluice serve`` makes before it starts)."""
    problems: list[ConfigError] = []
    _walk(ApiSettings, raw, "api", line, file, problems)
    if problems:
        return None, problems
    try:
        settings = msgspec.convert(plain, ApiSettings)
    except msgspec.ValidationError as exc:
        return None, [ConfigError(f"api: {exc}", file, line)]

    def at(*path: str | int) -> int | None:
        node, where = raw, line
        for step in path:
            if isinstance(step, int):
                node = node[step] if isinstance(node, list) and step < len(node) else None
                where = getattr(node, "line", where)
            elif isinstance(node, Mapping):
                where = getattr(node, "key_lines", {}).get(step, where)
                node = node.get(step)
        return where

    def connection(name: str, where: int | None, role: str) -> None:
        if name not in connections:
            known = ", ".join(sorted(connections)) or "none defined"
            problems.append(
                ConfigError(
                    f"api: {role}: unknown connection '{name}' (connections: {known}).{did_you_mean(name, connections)}",
                    file,
                    where,
                )
            )
        elif connection_scheme(connections[name]) not in SCHEMES:
            scheme = connection_scheme(connections[name])
            problems.append(
                ConfigError(
                    f"api: {role}: connection '{name}' is {scheme}://; the data API serves postgresql, mysql and sqlite",
                    file,
                    where,
                )
            )

    patterns = [p for source in settings.sources for p in source.tables]
    for index, source in enumerate(settings.sources):
        connection(source.connection, at("sources", index, "connection"), f"sources[{index}]")
    for table, name in settings.mutations.items():
        connection(name, at("mutations", table), f"mutations of '{table}'")
    for section, tables in (("mutations", list(settings.mutations)), ("operations", list(settings.operations))):
        for table in tables:
            if not _covered(table, patterns):
                problems.append(
                    ConfigError(
                        f"api: {section}: '{table}' is not among the sources' tables ({', '.join(patterns)})",
                        file,
                        at(section, table),
                    )
                )
    for role, granted in settings.roles.items():
        for table in granted:
            if not _covered(table, patterns):
                problems.append(
                    ConfigError(
                        f"api: roles.{role}: '{table}' is not among the sources' tables ({', '.join(patterns)})",
                        file,
                        at("roles", role, table),
                    )
                )
    seen: dict[str, str] = {}
    for table, names in settings.operations.items():
        for op in msgspec.structs.fields(names):
            value = getattr(names, op.name)
            if value is None:
                continue
            where = at("operations", table, op.name)
            if not _NAME.fullmatch(value) or value.startswith("__"):
                problems.append(
                    ConfigError(
                        f"api: operations.{table}.{op.name}: {value!r} is not a GraphQL name ([_A-Za-z][_0-9A-Za-z]*)",
                        file,
                        where,
                    )
                )
            elif value in seen and op.name != "subscription":
                problems.append(
                    ConfigError(f"api: operations.{table}.{op.name}: '{value}' is already {seen[value]}", file, where)
                )
            elif op.name != "subscription":
                seen[value] = f"operations.{table}.{op.name}"
    known_roles = set(settings.roles) | {settings.admin_role}
    problems += _role_problems(settings, plain, known_roles, file, at)
    _sync_mutations(settings, seen, known_roles, syncs, file, at, problems)
    for index, proxy in enumerate(settings.proxies):
        problems += _unknown_roles(proxy.roles or [], known_roles, f"proxies[{index}]", file, at("proxies", index, "roles"))
    for key in ("graphql_path", "rest_path"):
        path = getattr(settings, key)
        if not path.startswith("/") or any(path == r or path.startswith(r + "/") for r in CONTROL_ROUTES) or path == "/":
            problems.append(
                ConfigError(
                    f"api: {key} {path!r} must start with '/' and not be a route of the control API "
                    f"({', '.join(CONTROL_ROUTES)})",
                    file,
                    at(key),
                )
            )
    if settings.graphql_path == settings.rest_path:
        problems.append(ConfigError("api: graphql_path and rest_path must differ", file, at("rest_path")))
    problems += _proxy_overlaps(settings, file, at)
    if settings.cors is not None:
        for index, origin in enumerate(settings.cors.allow_origins):
            if origin != "*" and not ORIGIN.fullmatch(origin):
                problems.append(
                    ConfigError(
                        f"api: cors: allow_origins[{index}] {origin!r} is not an origin: write scheme://host[:port] with "
                        "no path (https://app.example.com, http://127.0.0.1:5173), https://*.example.com for "
                        "subdomains, or '*'",
                        file,
                        at("cors", "allow_origins", index),
                    )
                )
    if settings.cors is not None and settings.cors.allow_credentials and "*" in settings.cors.allow_origins:
        problems.append(
            ConfigError(
                "api: cors: allow_credentials cannot go with allow_origins '*' (browsers refuse it): list the origins",
                file,
                at("cors", "allow_credentials"),
            )
        )
    from sluice.api.security.checks import setting_path, settings_problems

    for problem in settings_problems(settings, Path(file).resolve().parent if project_dir is None else project_dir):
        problems.append(ConfigError(problem.message, file, at(*setting_path(problem))))
    return settings, problems


def _role_problems(
    settings: ApiSettings, plain: Any, known_roles: set[str], file: str, at: Callable[..., int | None]
) -> list[ConfigError]:
    """An ``anon_role`` written in the file that no role defines, and unknown operators in the roles' expressions."""
    problems: list[ConfigError] = []
    anon = settings.auth.anon_role
    auth = plain.get("auth") if isinstance(plain, Mapping) else None
    if anon is not None and isinstance(auth, Mapping) and "anon_role" in auth and anon not in known_roles:
        problems.append(
            ConfigError(
                f"api: auth: anon_role '{anon}' is not a role of roles: (roles: {', '.join(sorted(known_roles))}): every "
                f"request without credentials would be refused; define it under roles: or set anon_role: null."
                f"{did_you_mean(anon, known_roles)}",
                file,
                at("auth", "anon_role"),
            )
        )
    for role, granted in settings.roles.items():
        for table, permissions in granted.items():
            for operation in ("select", "insert", "update", "delete"):
                permission = getattr(permissions, operation)
                for setting in ("filter", "check"):
                    for bad in _unknown_operators(getattr(permission, setting, None) if permission else None):
                        problems.append(
                            ConfigError(
                                f"api: roles.{role}.{table}.{operation}.{setting}: unknown operator '{bad}' "
                                f"(operators: {', '.join(OPERATORS)}, and _and, _or, _not).{did_you_mean(bad, OPERATORS)}",
                                file,
                                at("roles", role, table, operation, setting),
                            )
                        )
    return problems


OPERATORS = ("_eq", "_neq", "_gt", "_gte", "_lt", "_lte", "_in", "_nin", "_like", "_ilike", "_is_null")
"""The comparison operators of a boolean expression (``where``, and the ``filter``/``check`` of ``api.roles``)."""


def _unknown_operators(expression: Any) -> list[str]:
    """Operators of ``expression`` (a ``where``-shaped boolean expression) that are not in :data:`OPERATORS`: a
    mapping whose keys all start with ``_`` (other than ``_and``/``_or``/``_not``) holds a column's comparisons."""
    found: list[str] = []
    if not isinstance(expression, Mapping):
        return found
    for key, value in expression.items():
        if key in ("_and", "_or"):
            for item in value if isinstance(value, list) else []:
                found += _unknown_operators(item)
        elif key == "_not":
            found += _unknown_operators(value)
        elif isinstance(value, Mapping) and value and all(str(k).startswith("_") for k in value):
            if not set(value) & {"_and", "_or", "_not"}:
                found += [str(k) for k in value if k not in OPERATORS]
            else:
                found += _unknown_operators(value)
        else:
            found += _unknown_operators(value)
    return found


def under_path(path: str, prefix: str) -> bool:
    """Whether URL ``path`` is ``prefix`` or below it (``/rest`` covers ``/rest/x``, not ``/restx``)."""
    prefix = prefix.rstrip("/") or "/"
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def _proxy_overlaps(settings: ApiSettings, file: str, at: Callable[..., int | None]) -> list[ConfigError]:
    """A proxy route whose path would shadow, or be shadowed by, GraphQL, REST, the control API or another proxy."""
    problems: list[ConfigError] = []
    taken = [(settings.graphql_path, "graphql_path"), (settings.rest_path, "rest_path")]
    taken += [(route, "a route of the control API") for route in CONTROL_ROUTES]
    for index, proxy in enumerate(settings.proxies):
        path = proxy.path.rstrip("/") or "/"
        clash = next((what for other, what in taken if under_path(path, other) or under_path(other, path)), None)
        if clash is not None:
            problems.append(
                ConfigError(
                    f"api: proxies[{index}]: path {proxy.path!r} overlaps {clash}: give the proxy a path of its own",
                    file,
                    at("proxies", index, "path"),
                )
            )
        taken.append((path, f"proxies[{index}]"))
    return problems


def _unknown_roles(roles: list[str], known: set[str], label: str, file: str, line: int | None) -> list[ConfigError]:
    """A problem for each of ``roles`` that is not in ``known`` (``api.roles`` and ``admin_role``)."""
    listed = ", ".join(sorted(known))
    return [
        ConfigError(f"api: {label}: unknown role '{role}' (roles: {listed})." + did_you_mean(role, known), file, line)
        for role in roles
        if role not in known
    ]


def _sync_mutations(
    settings: ApiSettings,
    seen: dict[str, str],
    known_roles: set[str],
    syncs: Collection[str] | None,
    file: str,
    at: Callable[..., int | None],
    problems: list[ConfigError],
) -> None:
    """``sync_mutations``: GraphQL names not taken by ``operations``, defined roles, syncs of ``syncs:``."""
    for field_name, entry in settings.sync_mutations.items():
        where = at("sync_mutations", field_name)
        if not _NAME.fullmatch(field_name) or field_name.startswith("__"):
            problems.append(
                ConfigError(f"api: sync_mutations: {field_name!r} is not a GraphQL name ([_A-Za-z][_0-9A-Za-z]*)", file, where)
            )
        elif field_name in seen:
            problems.append(ConfigError(f"api: sync_mutations: '{field_name}' is already {seen[field_name]}", file, where))
        label = f"sync_mutations.{field_name}"
        problems += _unknown_roles(entry.roles, known_roles, label, file, at("sync_mutations", field_name, "roles"))
        if syncs is not None and entry.sync not in syncs:
            listed = ", ".join(sorted(syncs)) or "none defined"
            problems.append(
                ConfigError(
                    f"api: sync_mutations.{field_name}: no sync named '{entry.sync}' in syncs: ({listed})."
                    + did_you_mean(entry.sync, list(syncs)),
                    file,
                    at("sync_mutations", field_name, "sync"),
                )
            )
