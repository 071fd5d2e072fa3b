"""SQL text with its bind parameters, and what differs between PostgreSQL, MariaDB/MySQL and SQLite.

A :class:`Frag` is SQL text whose placeholders are in the order of its ``params``; concatenating fragments
keeps both in step, so a statement is built left to right and values never enter the text. Identifiers enter
the text only through :meth:`Dialect.quote`, and only names found in the catalog are ever quoted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sluice.api.rest.model import Column


@dataclass(slots=True)
class Frag:
    """SQL ``text`` with ``%s`` placeholders (rewritten per driver at the end) and their ``params``."""

    text: str = ""
    params: list[Any] = field(default_factory=list)

    def add(self, other: Frag | str, *params: Any) -> Frag:
        """Append ``other`` (a fragment, or text with ``params``) in place; returns ``self``."""
        if isinstance(other, Frag):
            self.text += other.text
            self.params.extend(other.params)
        else:
            self.text += other
            self.params.extend(params)
        return self

    def __add__(self, other: Frag | str) -> Frag:
        return Frag(self.text, list(self.params)).add(other)


def join(parts: Iterable[Frag], sep: str) -> Frag:
    """The fragments joined by ``sep``."""
    out = Frag()
    for i, part in enumerate(parts):
        if i:
            out.add(sep)
        out.add(part)
    return out


def param(value: Any) -> Frag:
    """One bind parameter."""
    return Frag("%s", [value])


class Dialect:
    """PostgreSQL: the reference; MariaDB/MySQL and SQLite override what differs."""

    name = "postgresql"
    placeholder = "%s"
    nulls_order = True  # NULLS FIRST / LAST supported
    returning_update = True  # UPDATE ... RETURNING
    writes_in_cte = True  # WITH m AS (INSERT ... RETURNING *) SELECT ...
    text_type = "text"

    def quote(self, name: str) -> str:
        """``name`` as a quoted identifier."""
        return '"' + name.replace('"', '""') + '"'

    def table(self, schema: str | None, name: str) -> str:
        return (self.quote(schema) + "." if schema else "") + self.quote(name)

    def as_text(self, expr: str) -> str:
        return f"CAST({expr} AS {self.text_type})"

    def like(self, expr: str, insensitive: bool) -> str:
        return f"{self.as_text(expr)} {'ILIKE' if insensitive else 'LIKE'} %s"

    def regex(self, expr: str, insensitive: bool) -> str:
        return f"{self.as_text(expr)} {'~*' if insensitive else '~'} %s"

    def cast(self, expr: str, to: str) -> str:
        types = {"int": "integer", "double": "double precision", "json": "json"}
        return f"CAST({expr} AS {types.get(to, to)})"

    def output(self, expr: str, column: Column | None) -> str:
        """A column's value as it goes into a JSON object."""
        return expr

    def finish(self, frag: Frag) -> tuple[str, Sequence[Any]]:
        """The driver's statement text and parameters."""
        if self.placeholder == "%s":
            return frag.text, frag.params
        return frag.text.replace("%s", self.placeholder), frag.params

    # JSON assembly: items are (alias, expression) pairs of one row.

    def select_items(self, items: Sequence[tuple[str, Frag]]) -> Frag:
        return join((expr + f" AS {self.quote(alias)}" for alias, expr in items), ", ")

    def object_subquery(self, items: Sequence[tuple[str, Frag]], rest: Frag) -> Frag:
        """A JSON object (or null) of the row that ``rest`` (``FROM ... WHERE ...``) finds."""
        return Frag("(SELECT row_to_json(e) FROM (SELECT ").add(self.select_items(items)).add(" ").add(rest).add(") e)")

    def array_subquery(self, items: Sequence[tuple[str, Frag]], rest: Frag, order: str = "", page: Frag | None = None) -> Frag:
        """A JSON array (``[]`` when empty) of the rows that ``rest`` (``FROM ... WHERE ...``) finds, in
        ``order`` (`` ORDER BY ...``), cut by ``page`` (`` LIMIT ... OFFSET ...``)."""
        rest = Frag(rest.text, list(rest.params)).add(order).add(page if page is not None else Frag())
        return (
            Frag("(SELECT coalesce(json_agg(e), '[]'::json) FROM (SELECT ")
            .add(self.select_items(items))
            .add(" ")
            .add(rest)
            .add(") e)")
        )

    def top(
        self, items: Sequence[tuple[str, Frag]], rest: Frag, total: Frag | None, order: str = "", page: Frag | None = None
    ) -> Frag:
        """``SELECT total, page_count, body_text`` over the rows ``rest`` finds (``order``, ``page``: as in
        :meth:`array_subquery`); ``total`` is SQL text spliced as the first column(s)."""
        rest = Frag(rest.text, list(rest.params)).add(order).add(page if page is not None else Frag())
        head = Frag("SELECT ").add(total if total is not None else Frag("NULL")).add(", count(*), ")
        body = Frag("coalesce(json_agg(e), '[]'::json)::text FROM (SELECT ").add(self.select_items(items))
        return head.add(body).add(" ").add(rest).add(") e")


class SqliteDialect(Dialect):
    name = "sqlite"
    placeholder = "?"
    writes_in_cte = False

    def like(self, expr: str, insensitive: bool) -> str:
        if insensitive:
            return f"lower({self.as_text(expr)}) LIKE lower(%s)"
        return f"{self.as_text(expr)} GLOB %s"

    def regex(self, expr: str, insensitive: bool) -> str:
        from sluice.api.rest.errors import RestError

        raise RestError("match and imatch are not available on SQLite", status=400)

    def cast(self, expr: str, to: str) -> str:
        types = {"int": "integer", "bigint": "integer", "double": "real", "boolean": "integer", "date": "text", "json": "text"}
        return f"CAST({expr} AS {types.get(to, to)})"

    def output(self, expr: str, column: Column | None) -> str:
        if column is not None and column.kind == "boolean":
            return f"(CASE WHEN {expr} IS NULL THEN NULL WHEN {expr} THEN json('true') ELSE json('false') END)"
        if column is not None and column.kind == "json":
            return f"json({expr})"
        return expr

    def pairs(self, items: Sequence[tuple[str, Frag]]) -> Frag:
        return join((param(alias).add(", ").add(expr) for alias, expr in items), ", ")

    def object_subquery(self, items: Sequence[tuple[str, Frag]], rest: Frag) -> Frag:
        return Frag("json((SELECT json_object(").add(self.pairs(items)).add(") ").add(rest).add("))")

    def array_subquery(self, items: Sequence[tuple[str, Frag]], rest: Frag, order: str = "", page: Frag | None = None) -> Frag:
        rest = Frag(rest.text, list(rest.params)).add(order).add(page if page is not None else Frag())
        return (
            Frag("json((SELECT coalesce(json_group_array(json(e.j)), '[]') FROM (SELECT json_object(")
            .add(self.pairs(items))
            .add(") AS j ")
            .add(rest)
            .add(") e))")
        )

    def top(
        self, items: Sequence[tuple[str, Frag]], rest: Frag, total: Frag | None, order: str = "", page: Frag | None = None
    ) -> Frag:
        rest = Frag(rest.text, list(rest.params)).add(order).add(page if page is not None else Frag())
        head = Frag("SELECT ").add(total if total is not None else Frag("NULL")).add(", count(*), ")
        body = Frag("coalesce(json_group_array(json(e.j)), '[]') FROM (SELECT json_object(").add(self.pairs(items))
        return head.add(body).add(") AS j ").add(rest).add(") e")


class MysqlDialect(Dialect):
    name = "mysql"
    nulls_order = False
    returning_update = False
    writes_in_cte = False
    text_type = "CHAR"

    def quote(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def like(self, expr: str, insensitive: bool) -> str:
        if insensitive:
            return f"LOWER({self.as_text(expr)}) LIKE LOWER(%s)"
        return f"{self.as_text(expr)} LIKE BINARY %s"

    def regex(self, expr: str, insensitive: bool) -> str:
        if insensitive:
            return f"LOWER({self.as_text(expr)}) REGEXP LOWER(%s)"
        return f"{self.as_text(expr)} REGEXP BINARY %s"

    def cast(self, expr: str, to: str) -> str:
        types = {
            "text": "CHAR",
            "int": "SIGNED",
            "integer": "SIGNED",
            "bigint": "SIGNED",
            "numeric": "DECIMAL(65,30)",
            "real": "DOUBLE",
            "double": "DOUBLE",
            "boolean": "SIGNED",
            "date": "DATE",
            "json": "CHAR",
        }
        return f"CAST({expr} AS {types[to]})"

    def output(self, expr: str, column: Column | None) -> str:
        if column is not None and column.kind == "boolean":
            true, false = "JSON_EXTRACT('true', '$')", "JSON_EXTRACT('false', '$')"
            return f"(CASE WHEN {expr} IS NULL THEN NULL WHEN {expr} THEN {true} ELSE {false} END)"
        if column is not None and column.kind == "json":
            return f"JSON_EXTRACT({expr}, '$')"
        return expr

    def pairs(self, items: Sequence[tuple[str, Frag]]) -> Frag:
        return join((param(alias).add(", ").add(expr) for alias, expr in items), ", ")

    def object_subquery(self, items: Sequence[tuple[str, Frag]], rest: Frag) -> Frag:
        return Frag("JSON_EXTRACT((SELECT JSON_OBJECT(").add(self.pairs(items)).add(") ").add(rest).add("), '$')")

    def array_subquery(self, items: Sequence[tuple[str, Frag]], rest: Frag, order: str = "", page: Frag | None = None) -> Frag:
        # A derived table cannot see the outer row here: aggregate directly, ordered and cut by the aggregate.
        frag = Frag("JSON_EXTRACT(COALESCE((SELECT JSON_ARRAYAGG(JSON_OBJECT(").add(self.pairs(items)).add(")")
        frag.add(order).add(page if page is not None else Frag()).add(") ").add(rest).add("), JSON_ARRAY()), '$')")
        return frag

    def top(
        self, items: Sequence[tuple[str, Frag]], rest: Frag, total: Frag | None, order: str = "", page: Frag | None = None
    ) -> Frag:
        head = Frag("SELECT ").add(total if total is not None else Frag("NULL")).add(", count(*), ")
        body = Frag("CONCAT('[', COALESCE(GROUP_CONCAT(e.j ORDER BY e.n SEPARATOR ','), ''), ']') FROM (SELECT JSON_OBJECT(")
        window = f"ROW_NUMBER() OVER ({order.strip()})" if order else "0"
        head.add(body).add(self.pairs(items)).add(f") AS j, {window} AS n ").add(rest).add(order)
        return head.add(page if page is not None else Frag()).add(") e")


DIALECTS: dict[str, Dialect] = {"postgresql": Dialect(), "sqlite": SqliteDialect(), "mysql": MysqlDialect()}
