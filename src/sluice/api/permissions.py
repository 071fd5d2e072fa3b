"""A role's permissions on the exposed tables, as the compilers apply them inside the SQL.

``api.roles`` gives, per role and table, what may be selected, inserted, updated and deleted (Hasura's
permission model): column lists, a row ``filter`` AND-ed into the statement's WHERE (select, update, delete),
a ``check`` every written row must satisfy (insert, update), column presets (``set``) and a row limit.
``api.admin_role`` may do everything. A value ``{claim: NAME}`` in a filter, check or preset is the request
principal's claim ``NAME`` (a dotted path reads nested claims), always sent as a bind parameter.

Refusals raise :class:`~sluice.api.gate.DataApiError` 403 ``permission-denied``, naming the role, table,
operation and column; a filter needing a claim the request lacks raises 403 ``claim-missing``.

A permission naming a column (in ``columns``, ``set``, ``filter`` or ``check``) the table does not have is a
server misconfiguration (:func:`permission_problems`): ``sluice validate --live`` reports it and the server logs
it at ERROR each time the schema is built (at start and after a catalog change). In ``columns`` (an allow-list)
the missing column is only left out, so a column dropped at the source does not take the table away from the
role; in ``set``, ``filter`` or ``check`` the permission cannot be applied as written, and a request that needs
it is refused with 500 ``bad-permission`` naming the role and table (the log names the column), never with a
client error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sluice.api.gate import DataApiError
from sluice.api.model import ExposedTable, Model
from sluice.api.principal import Principal
from sluice.api.settings import ApiSettings, BoolExp, TablePermissions
from sluice.errors import did_you_mean

log = logging.getLogger("sluice.api")
OPERATIONS: tuple[Operation, ...] = ("select", "insert", "update", "delete")

Operation = str  # "select", "insert", "update", "delete"


@dataclass(frozen=True, slots=True)
class PermissionProblem:
    """A column a permission names that its table lacks: ``api.roles.<role>.<table>.<operation>.<setting>``
    (``setting``: ``columns``, ``set``, ``filter`` or ``check``); ``base`` is the table's GraphQL type name."""

    role: str
    table: str
    base: str
    operation: Operation
    setting: str
    column: str
    message: str


@dataclass(frozen=True, slots=True)
class Access:
    """What a role may do with one table for one operation; ``columns`` None means every column."""

    columns: frozenset[str] | None = None
    filter: BoolExp = field(default_factory=dict)
    check: BoolExp = field(default_factory=dict)
    preset: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None
    aggregate: bool = True

    def allows(self, column: str) -> bool:
        return self.columns is None or column in self.columns


FULL = Access()


class Permissions:
    """Resolves ``api.roles`` against the exposed tables (by table name, ``schema.name`` or GraphQL name)."""

    def __init__(self, settings: ApiSettings, model: Model) -> None:
        self.admin_role = settings.admin_role
        self.roles: dict[str, dict[str, TablePermissions]] = {}
        for role, tables in settings.roles.items():
            resolved: dict[str, TablePermissions] = {}
            for name, permissions in tables.items():
                exposed = model.find(name)
                if exposed is not None:
                    resolved[exposed.base] = permissions
            self.roles[role] = resolved
        self.broken: dict[tuple[str, str, Operation], PermissionProblem] = {}
        for problem in permission_problems(settings, model):
            if problem.setting == "columns":  # an allow-list: a column that is gone is simply not readable
                log.error("data API: %s; the other columns stay available", problem.message)
                continue
            log.error("data API: %s; requests needing it are refused (500 bad-permission)", problem.message)
            self.broken.setdefault((problem.role, problem.base, problem.operation), problem)

    def access(self, principal: Principal, table: ExposedTable, operation: Operation) -> Access:
        """The role's access, or :class:`DataApiError` 403 when the operation is not granted."""
        role = principal.role
        if role == self.admin_role:
            return FULL
        permissions = self.roles.get(role, {}).get(table.base)
        granted = getattr(permissions, operation, None) if permissions is not None else None
        if granted is None:
            raise DataApiError(f"role '{role}' may not {operation} {table.base}", status=403, code="permission-denied")
        broken = self.broken.get((role, table.base, operation))
        if broken is not None:  # the details (the permission's settings) go to the log, not to the client
            raise DataApiError(
                f"server misconfiguration: role '{role}' has a {operation} permission on {table.base} that names a "
                "column the table does not have; the server log names it",
                status=500,
                code="bad-permission",
            )
        listed = getattr(granted, "columns", "*")
        columns = None if listed == "*" or not isinstance(listed, list) else _columns(table, listed)
        return Access(
            columns=columns,
            filter=dict(getattr(granted, "filter", {}) or {}),
            check=dict(getattr(granted, "check", {}) or {}),
            preset={_column_name(table, k): v for k, v in (getattr(granted, "set", {}) or {}).items()},
            limit=getattr(granted, "limit", None),
            aggregate=bool(getattr(granted, "aggregate", True)),
        )

    def require_column(self, principal: Principal, table: ExposedTable, access: Access, column: str, operation: str) -> None:
        """Raise 403 unless ``access`` lets the role ``operation`` the column ``column`` (a database name)."""
        if not access.allows(column):
            raise DataApiError(
                f"role '{principal.role}' may not {operation} the column {table.field_of.get(column, column)} of {table.base}",
                status=403,
                code="permission-denied",
            )


def permission_problems(settings: ApiSettings, model: Model) -> list[PermissionProblem]:
    """Every column that ``api.roles`` names (in ``columns``, ``set``, and at any depth of ``filter`` and
    ``check``, through ``_and``/``_or``/``_not`` and relationships) and that its table in ``model`` lacks.
    Tables ``model`` does not expose are skipped (the file's checks report them)."""
    problems: list[PermissionProblem] = []
    for role, tables in settings.roles.items():
        for name, permissions in tables.items():
            exposed = model.find(name)
            if exposed is None:
                continue
            for operation in OPERATIONS:
                granted = getattr(permissions, operation)
                if granted is None:
                    continue
                named: list[tuple[str, ExposedTable, str]] = []
                listed = getattr(granted, "columns", "*")
                if isinstance(listed, list):
                    named += [("columns", exposed, column) for column in listed]
                named += [("set", exposed, column) for column in getattr(granted, "set", {}) or {}]
                for setting in ("filter", "check"):
                    named += [(setting, t, c) for t, c in _expression_columns(model, exposed, getattr(granted, setting, {}))]
                for setting, table, column in named:
                    if table.column(column) is not None:
                        continue
                    choices = [*table.fields, *(c.name for c in table.table.columns)]
                    message = (
                        f"role '{role}' {operation} on '{name}': {setting} names '{column}', which is not a column of "
                        f"{table.base}.{did_you_mean(column, choices)}"
                    )
                    problems.append(PermissionProblem(role, name, exposed.base, operation, setting, column, message))
    return problems


def _expression_columns(model: Model, table: ExposedTable, expression: Any) -> list[tuple[ExposedTable, str]]:
    """The (table, column) pairs a boolean expression compares (relationships followed to their tables)."""
    found: list[tuple[ExposedTable, str]] = []
    if not isinstance(expression, dict):
        return found
    for key, value in expression.items():
        if key in ("_and", "_or"):
            for item in value if isinstance(value, list) else []:
                found += _expression_columns(model, table, item)
        elif key == "_not":
            found += _expression_columns(model, table, value)
        elif key in table.relationships:
            target = model.tables.get(table.relationships[key].target)
            if target is not None:
                found += _expression_columns(model, target, value)
        else:
            found.append((table, key))
    return found


def _column_name(table: ExposedTable, name: str) -> str:
    column = table.column(name)
    return column.name if column is not None else name


def _columns(table: ExposedTable, names: list[str]) -> frozenset[str]:
    return frozenset(_column_name(table, name) for name in names)


def claim_value(principal: Principal, value: Any) -> Any:
    """``value`` with a ``{claim: NAME}`` replaced by the principal's claim (dotted path allowed). A claim used in a
    permission is a string, number, boolean or null, or a list of those (for ``_in``); anything else (an object,
    nested lists) raises :class:`DataApiError` 403 ``claim-invalid`` rather than reaching the SQL."""
    if isinstance(value, dict) and set(value) == {"claim"} and isinstance(value["claim"], str):
        return _checked_claim(value["claim"], _claim(principal, value["claim"]), principal.role)
    if isinstance(value, list):
        return [claim_value(principal, v) for v in value]
    return value


def _checked_claim(name: str, value: Any, role: str) -> Any:
    items = value if isinstance(value, list) else [value]
    if any(isinstance(item, (dict, list)) for item in items):
        raise claim_invalid(name, role, "an object or nested list")
    return value


def compared_value(principal: Principal, raw: Any, op: str, scalar: str) -> Any:
    """The value a permission's filter compares with operator ``op`` (``raw``: as written in ``api.roles``), its
    ``{claim: NAME}`` resolved: under ``_in``/``_nin`` a one-value claim is a list of one, elsewhere a list claim
    is 403 ``claim-invalid``, and the claim takes the column's type (:func:`coerce_claim`, ``scalar``: the column's
    GraphQL scalar)."""
    value = claim_value(principal, raw)
    if not (isinstance(raw, dict) and set(raw) == {"claim"}) or op == "_is_null":
        return value
    name = raw["claim"]
    if op in ("_in", "_nin"):
        value = value if value is None or isinstance(value, list) else [value]
    elif isinstance(value, list):
        raise claim_invalid(name, principal.role, f"a list, compared with {op}")
    return coerce_claim(name, value, scalar, principal.role)


def preset_value(principal: Principal, raw: Any, column: str) -> Any:
    """The value a permission's ``set`` writes into ``column``, its ``{claim: NAME}`` resolved; a list claim is 403
    ``claim-invalid``."""
    value = claim_value(principal, raw)
    if isinstance(value, list) and isinstance(raw, dict) and set(raw) == {"claim"}:
        raise claim_invalid(raw["claim"], principal.role, f"a list, set into column {column}")
    return value


def coerce_claim(name: str, value: Any, scalar: str, role: str) -> Any:
    """A claim's value as the type of the column it is compared with (``scalar``: the column's GraphQL scalar), as
    Hasura casts session variables to the column's type: ``5`` matches a text ``'5'``, ``"5"`` an integer ``5``.
    Raises :class:`DataApiError` 403 ``claim-invalid`` when it cannot be that type (a boolean for a number, ``"x"``
    for an integer), never a database error. Lists (``_in``) are coerced item by item."""
    if isinstance(value, list):
        return [coerce_claim(name, item, scalar, role) for item in value]
    if value is None:
        return None
    if scalar in ("String", "JSON", "Date", "DateTime", "Time"):
        if isinstance(value, bool):
            raise claim_invalid(name, role, f"a boolean, compared with a {scalar} column")
        return str(value) if isinstance(value, (int, float)) else value
    if scalar in ("Int", "BigInt", "Float", "Numeric"):
        if isinstance(value, bool):
            raise claim_invalid(name, role, f"a boolean, compared with a {scalar} column")
        if isinstance(value, (int, float)):
            return value
        text = str(value).strip()
        try:
            return int(text) if scalar in ("Int", "BigInt") else float(text) if scalar == "Float" else text
        except ValueError:
            raise claim_invalid(name, role, f"{value!r}, compared with a {scalar} column") from None
    if scalar == "Boolean":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise claim_invalid(name, role, f"{value!r}, compared with a Boolean column")
    return value


def claim_invalid(name: str, role: str, what: str) -> DataApiError:
    """The 403 of a claim whose value cannot be used where role ``role``'s permission puts it."""
    return DataApiError(
        f"this request's claim '{name}' is {what}, which role '{role}''s permission cannot compare; "
        "a claim in a permission is a string, number, boolean, or a list of those for _in",
        status=403,
        code="claim-invalid",
    )


def _claim(principal: Principal, name: str) -> Any:
    """The claim ``name`` of ``principal`` (a dotted path reads nested claims); 403 ``claim-missing`` without it."""
    claims = principal.claims
    if name in claims:
        return claims[name]
    current: Any = claims
    for part in name.split("."):
        if not isinstance(current, dict) or part not in current:
            raise DataApiError(
                f"this request has no claim '{name}', which role '{principal.role}' needs", status=403, code="claim-missing"
            )
        current = current[part]
    return current
