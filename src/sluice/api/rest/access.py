"""What a role may do with a table: the ``api.roles`` permissions of :mod:`sluice.api.settings`, resolved.

``api.admin_role`` may do everything; a role without an entry for a table or an operation is refused (403
``SLR403``). Row filters keep the ``where`` format; :class:`sluice.api.rest.where.Where` applies them inside
the statement, with the request's claims.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sluice.api.principal import Principal
from sluice.api.rest.errors import DENIED, RestError
from sluice.api.rest.model import Column, Table
from sluice.api.settings import ApiSettings

Operation = Literal["select", "insert", "update", "delete"]


@dataclass(frozen=True, slots=True)
class Access:
    """One operation's permission on one table: the ``columns`` it may name (read for select, write for
    insert/update), the row ``filter``, the ``check`` rows must pass after the change, column presets (``set``),
    and the role's ``limit`` (rows per request, select only)."""

    columns: dict[str, Column]
    filter: dict[str, Any] = field(default_factory=dict)
    check: dict[str, Any] = field(default_factory=dict)
    set: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None


def access(settings: ApiSettings, principal: Principal, table: Table, operation: Operation) -> Access:
    """The role's :class:`Access` for ``operation`` on ``table``; raises :class:`RestError` 403 when refused
    (also for a write on a read-only table or view, 405 ``SLR117``)."""
    if operation != "select" and not table.writable:
        raise RestError(
            f"{table.name!r} is read-only (a view, a table without primary key, or a read-only source)",
            status=405,
            code="SLR117",
            headers={"Allow": "GET, HEAD"},
        )
    if principal.role == settings.admin_role:
        return Access(dict(table.columns))
    permissions = settings.roles.get(principal.role, {}).get(table.name)
    rule = getattr(permissions, operation, None) if permissions is not None else None
    if rule is None:
        raise RestError(f"the role {principal.role!r} may not {operation} {table.name!r}", status=403, code=DENIED)
    names = getattr(rule, "columns", "*")
    columns = dict(table.columns) if names == "*" else {n: table.columns[n] for n in names if n in table.columns}
    return Access(
        columns,
        filter=dict(getattr(rule, "filter", {}) or {}),
        check=dict(getattr(rule, "check", {}) or {}),
        set=dict(getattr(rule, "set", {}) or {}),
        limit=getattr(rule, "limit", None),
    )
