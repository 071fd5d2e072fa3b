"""A parsed GET request compiled to ONE SQL statement: the page of rows as JSON text, built by the database,
with embedded relations as correlated subqueries (no N+1) and, for ``Prefer: count=exact``, the total as a
scalar subquery of the same statement (PostgREST's shape: ``SELECT total, page_count, body``).

Embedding follows PostgREST: a relation is named by the other table (``author(*)``) or by the foreign-key
column (``author_id(*)``); a hint (``articles!author_id(*)``, ``!fk_name``) picks one of several foreign keys;
many-to-one and one-to-one give an object (or null), one-to-many an array; ``!inner`` keeps only the parents
that have a match. Many-to-many through a junction table is not embedded (embed the junction, then the far side).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sluice.api.rest.access import Access
from sluice.api.rest.errors import AMBIGUOUS, COLUMN, EMBED, RestError
from sluice.api.rest.model import Catalog, Column, ForeignKey, Table
from sluice.api.rest.query import Embed, Field, Node, OrderTerm, Path, ReadRequest, Star, conjunction
from sluice.api.rest.sql import Dialect, Frag, join
from sluice.api.rest.where import Where

AccessOf = Callable[[Table], Access]


@dataclass(frozen=True, slots=True)
class Relation:
    """How ``child`` joins its parent: ``pairs`` of (child column, parent column); ``many``: an array."""

    child: Table
    fk: ForeignKey
    pairs: tuple[tuple[str, str], ...]
    many: bool


def relation(catalog: Catalog, parent: Table, embed: Embed) -> Relation:
    """The relation ``embed`` names from ``parent``; raises 400 ``SLR200`` (none) or 300 ``SLR201`` (several)."""
    found: list[Relation] = []
    for fk in parent.foreign_keys:  # many-to-one: parent.fk -> child
        child = catalog.tables.get(fk.ref_table)
        if child is None:
            continue
        column = fk.columns[0] if len(fk.columns) == 1 else ""
        # PostgREST names it by the table or the column; Sluice's GraphQL by the column without ``_id``.
        named = embed.relation in (child.name, column) or (column.endswith("_id") and embed.relation == column[:-3])
        if named and _hinted(embed.hint, fk, child.name):
            found.append(Relation(child, fk, tuple(zip(fk.ref_columns, fk.columns, strict=True)), False))
    child = catalog.tables.get(embed.relation)
    if child is not None:
        for fk in child.foreign_keys:  # one-to-many: child.fk -> parent
            if fk.ref_table == parent.name and _hinted(embed.hint, fk, parent.name):
                unique = set(fk.columns) == set(child.primary_key) or any(set(fk.columns) == set(u) for u in child.unique)
                if any(r.fk is fk for r in found):
                    continue
                found.append(Relation(child, fk, tuple(zip(fk.columns, fk.ref_columns, strict=True)), not unique))
    if not found:
        raise RestError(
            f"no relation between {parent.name!r} and {embed.relation!r}",
            status=400,
            code=EMBED,
            hint="embed a table that a foreign key links to this one, by its name or the foreign-key column",
        )
    if len(found) > 1:
        names = ", ".join(f"{embed.relation}!{r.fk.name}" for r in found)
        raise RestError(
            f"more than one relation between {parent.name!r} and {embed.relation!r}",
            status=300,
            code=AMBIGUOUS,
            details=names,
            hint="pick one with a hint: " + names,
        )
    return found[0]


def _hinted(hint: str | None, fk: ForeignKey, other: str) -> bool:
    return hint is None or hint == fk.name or (len(fk.columns) == 1 and hint == fk.columns[0]) or hint == other


class ReadCompiler:
    """Builds the statement of one GET. ``access_of(table)`` gives the role's select :class:`Access`
    (raising 403); ``claims`` fill ``{claim: NAME}`` in row filters."""

    def __init__(self, catalog: Catalog, dialect: Dialect, access_of: AccessOf, claims: Mapping[str, Any]) -> None:
        self.catalog = catalog
        self.dialect = dialect
        self.access_of = access_of
        self.claims = claims
        self.aliases = 0
        self.used: set[Path] = {()}

    def alias(self) -> str:
        name = f"t{self.aliases}"
        self.aliases += 1
        return name

    def statement(
        self, table: Table, request: ReadRequest, *, limit: int | None, offset: int, count: bool
    ) -> tuple[Frag, Access]:
        """``SELECT total, page_count, body`` for ``table``; ``limit``/``offset`` already resolved."""
        access = self.access_of(table)
        alias = self.alias()
        items = self.items(table, access, alias, request.select, request, ())
        where = self.where(table, access, alias, request, (), request.select)
        unused = set(request.nodes) - self.used
        if unused:
            path = ".".join(sorted(unused)[0])
            raise RestError(f"{path!r} is not an embedded relation of the select list", status=400, code=EMBED)
        node = request.nodes.get((), Node())
        rest = Frag(f"FROM {self.dialect.table(table.schema, table.sql_name)} {alias} WHERE ").add(where)
        order = self.order(node.order, access, alias).text
        page = self.limit(limit, offset)
        total = None
        if count:
            source = self.dialect.table(table.schema, table.sql_name)
            total = Frag(f"(SELECT count(*) FROM {source} {alias} WHERE ").add(Frag(where.text, list(where.params))).add(")")
        return self.dialect.top(items, rest, total, order, page), access

    def where(self, table: Table, access: Access, alias: str, request: ReadRequest, path: Path, select: tuple[Any, ...]) -> Frag:
        """The role's row filter, the request's filters at ``path`` and the ``!inner`` embeds' EXISTS."""
        node = request.nodes.get(path, Node())
        row = Where(table, alias, self.dialect, claims=self.claims).compile(access.filter)
        asked = Where(table, alias, self.dialect, columns=access.columns, claims=self.claims).compile(conjunction(node.filters))
        parts = [row, asked]
        for item in select:
            if isinstance(item, Embed) and item.inner:
                parts.append(self.exists(table, alias, item, request, (*path, item.key)))
        return join(parts, " AND ")

    def exists(self, parent: Table, parent_alias: str, embed: Embed, request: ReadRequest, path: Path) -> Frag:
        rel = relation(self.catalog, parent, embed)
        access = self.access_of(rel.child)
        alias = self.alias()
        condition = self.join_condition(rel, alias, parent_alias)
        where = self.where(rel.child, access, alias, request, path, embed.items)
        source = self.dialect.table(rel.child.schema, rel.child.sql_name)
        return Frag(f"EXISTS (SELECT 1 FROM {source} {alias} WHERE {condition} AND ").add(where).add(")")

    def join_condition(self, rel: Relation, alias: str, parent_alias: str) -> str:
        q = self.dialect.quote
        return " AND ".join(f"{alias}.{q(c)} = {parent_alias}.{q(p)}" for c, p in rel.pairs)

    def items(
        self, table: Table, access: Access, alias: str, select: tuple[Any, ...], request: ReadRequest, path: Path
    ) -> list[tuple[str, Frag]]:
        """``(output name, expression)`` of each selected column and embed."""
        out: list[tuple[str, Frag]] = []
        for item in select:
            if isinstance(item, Star):
                out.extend((c.name, Frag(self.value(alias, c))) for c in access.columns.values())
            elif isinstance(item, Field):
                column = self.readable(table, access, item.name)
                expr = (
                    self.value(alias, column)
                    if item.cast is None
                    else self.dialect.cast(f"{alias}.{self.dialect.quote(column.name)}", item.cast)
                )
                out.append((item.alias or item.name, Frag(expr)))
            else:
                out.append((item.key, self.embed(table, alias, item, request, (*path, item.key))))
        names = [name for name, _ in out]
        if len(set(names)) != len(names):
            raise RestError("the select list names a column twice", status=400, hint="give one of them an alias: other:col")
        if not out:
            raise RestError(f"the role may read no column of {table.name!r}", status=400, code=COLUMN)
        return out

    def value(self, alias: str, column: Column) -> str:
        return self.dialect.output(f"{alias}.{self.dialect.quote(column.name)}", column)

    def readable(self, table: Table, access: Access, name: str) -> Column:
        column = access.columns.get(name)
        if column is None:
            raise RestError(f"column {name!r} of {table.name!r} does not exist or is not readable", status=400, code=COLUMN)
        return column

    def embed(self, parent: Table, parent_alias: str, embed: Embed, request: ReadRequest, path: Path) -> Frag:
        rel = relation(self.catalog, parent, embed)
        self.used.add(path)
        access = self.access_of(rel.child)
        alias = self.alias()
        items = self.items(rel.child, access, alias, embed.items, request, path)
        where = self.where(rel.child, access, alias, request, path, embed.items)
        source = self.dialect.table(rel.child.schema, rel.child.sql_name)
        rest = Frag(f"FROM {source} {alias} WHERE {self.join_condition(rel, alias, parent_alias)} AND ").add(where)
        if not rel.many:
            return self.dialect.object_subquery(items, rest)
        node = request.nodes.get(path, Node())
        order = self.order(node.order, access, alias).text
        page = self.limit(node.limit, node.offset or 0) if node.limit is not None or node.offset else None
        return self.dialect.array_subquery(items, rest, order, page)

    def order(self, terms: list[OrderTerm], access: Access, alias: str) -> Frag:
        if not terms:
            return Frag()
        q = self.dialect.quote
        parts = []
        for term in terms:
            if term.column not in access.columns:
                raise RestError(f"order: column {term.column!r} does not exist or is not readable", status=400, code=COLUMN)
            ref = f"{alias}.{q(term.column)}"
            direction = " DESC" if term.desc else ""
            if term.nulls and self.dialect.nulls_order:
                parts.append(f"{ref}{direction} NULLS {term.nulls.upper()}")
            elif term.nulls:
                parts.append(f"{ref} IS NULL {'DESC' if term.nulls == 'first' else 'ASC'}, {ref}{direction}")
            else:
                parts.append(ref + direction)
        return Frag(" ORDER BY " + ", ".join(parts))

    def limit(self, limit: int | None, offset: int) -> Frag:
        if limit is None:
            limit = 2**62 if self.dialect.name == "mysql" else -1
            if self.dialect.name == "postgresql":
                return Frag(" OFFSET %s", [offset]) if offset else Frag()
        return Frag(" LIMIT %s OFFSET %s", [limit, offset])
