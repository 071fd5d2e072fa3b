"""Parse a REST query string in PostgREST's conventions into a :class:`ReadRequest` (no I/O, no catalog).

Borrowed from PostgREST (https://postgrest.org/en/stable/references/api/tables_views.html):

- horizontal filters ``?col=op.value`` with ``eq neq gt gte lt lte like ilike match imatch in is`` and
  ``not.``; ``like``/``ilike`` take ``*`` for ``%``; ``in.(a,b,"c,d")``; ``is.null|not_null|true|false``;
- logic trees ``or=(a.eq.1,and(b.gt.2,b.lt.5))``, ``and=(...)``, ``not.or=(...)``;
- ``select=id,title:titre,price::text,author(name),posts:articles!author_id(*)``, ``!inner`` on an embed;
- ``order=col.desc.nullslast,other``; ``limit`` and ``offset``; each of ``filter``, ``order``, ``limit``,
  ``offset``, ``or``/``and`` may be prefixed by an embedded relation's path (``author.name=eq.x``,
  ``articles.order=id.desc``, ``articles.limit=2``) and then applies to that relation's rows;
- ``on_conflict=col,col`` and ``columns=col,col`` for writes.

Filters become boolean expressions in the GraphQL ``where`` format (Hasura's: ``{"col": {"_eq": v}}``,
``_and``, ``_or``, ``_not``), the same format as the ``api.roles`` row filters, with two operators of REST's
own: ``_is`` (``true``/``false``: SQL ``IS TRUE``/``IS FALSE``) and ``_regex``/``_iregex``. Values stay strings
here; the compiler converts them by column type. Every mistake raises :class:`RestError` 400 ``SLR100``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sluice.api.rest.errors import PARSE, RestError

BoolExp = dict[str, Any]
Path = tuple[str, ...]

OPERATORS = {
    "eq": "_eq",
    "neq": "_neq",
    "gt": "_gt",
    "gte": "_gte",
    "lt": "_lt",
    "lte": "_lte",
    "like": "_like",
    "ilike": "_ilike",
    "match": "_regex",
    "imatch": "_iregex",
    "in": "_in",
    "is": "_is",
}
RESERVED = {"select", "order", "limit", "offset", "on_conflict", "columns", "or", "and", "not.or", "not.and"}
CASTS = {"text", "integer", "int", "bigint", "numeric", "real", "double", "boolean", "date", "json"}
MAX_DEPTH = 8  # nesting of embeds and of logic trees


@dataclass(frozen=True, slots=True)
class Field:
    """A column of the select list: ``name``, output ``alias`` (or ``None``), ``cast`` (one of :data:`CASTS`)."""

    name: str
    alias: str | None = None
    cast: str | None = None


@dataclass(frozen=True, slots=True)
class Star:
    """``*``: every readable column."""


@dataclass(frozen=True, slots=True)
class Embed:
    """An embedded relation ``alias:relation!hint(items)``; ``inner`` keeps only parents that have a match."""

    relation: str
    items: tuple[Item, ...]
    alias: str | None = None
    hint: str | None = None
    inner: bool = False

    @property
    def key(self) -> str:
        """The name the relation goes by in the output and in filter paths."""
        return self.alias or self.relation


Item = Field | Star | Embed


@dataclass(frozen=True, slots=True)
class OrderTerm:
    """One ``order=`` term: ``column``, ``desc``, ``nulls`` (``"first"``, ``"last"`` or ``None``: the database's)."""

    column: str
    desc: bool = False
    nulls: str | None = None


@dataclass(slots=True)
class Node:
    """What applies at one level of the result (the table itself at path ``()``, an embed at its path)."""

    filters: list[BoolExp] = field(default_factory=list)
    order: list[OrderTerm] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None


@dataclass(slots=True)
class ReadRequest:
    """A parsed query string: ``select`` items, ``nodes`` by path, and the write parameters."""

    select: tuple[Item, ...] = (Star(),)
    nodes: dict[Path, Node] = field(default_factory=dict)
    on_conflict: tuple[str, ...] | None = None
    columns: tuple[str, ...] | None = None

    def node(self, path: Path) -> Node:
        """The node at ``path``, created empty when absent."""
        return self.nodes.setdefault(path, Node())

    @property
    def where(self) -> BoolExp:
        """The top level's filters as one expression (``{}``: every row)."""
        return conjunction(self.nodes.get((), Node()).filters)


def conjunction(filters: Sequence[BoolExp]) -> BoolExp:
    """``filters`` joined by AND (``{}`` when empty)."""
    if not filters:
        return {}
    return filters[0] if len(filters) == 1 else {"_and": list(filters)}


def bad(message: str, details: str | None = None, hint: str | None = None) -> RestError:
    """A 400 ``SLR100`` parse error."""
    return RestError(message, status=400, code=PARSE, details=details, hint=hint)


def parse_query(params: Iterable[tuple[str, str]]) -> ReadRequest:
    """The :class:`ReadRequest` of a query string's ``(key, value)`` pairs (repeated keys allowed)."""
    request = ReadRequest()
    for key, value in params:
        if key == "select":
            request.select = parse_select(value)
        elif key in ("on_conflict", "columns"):
            names = tuple(name for name in (identifier(part.strip(), key) for part in split_top(value)))
            if not names:
                raise bad(f"{key} names no column")
            setattr(request, key, names)
        else:
            path, last = split_key(key)
            node = request.node(path)
            if last == "order":
                node.order.extend(parse_order(value))
            elif last in ("limit", "offset"):
                setattr(node, last, parse_count(key, value))
            elif last in ("or", "and", "not.or", "not.and"):
                node.filters.append(parse_logic(last, value, 0))
            else:
                node.filters.append(parse_filter(last, value))
    return request


def split_key(key: str) -> tuple[Path, str]:
    """``a.b.col`` -> ``(("a", "b"), "col")``; ``a.not.or`` -> ``(("a",), "not.or")``."""
    if not key:
        raise bad("a query parameter has an empty name")
    parts = key.split(".")
    if len(parts) >= 2 and parts[-2] == "not" and parts[-1] in ("or", "and"):
        head, last = parts[:-2], "not." + parts[-1]
    else:
        head, last = parts[:-1], parts[-1]
    if len(head) > MAX_DEPTH or any(not p for p in [*head, last]):
        raise bad(f"the query parameter {key!r} is not a column, a relation path or a keyword")
    return tuple(head), last


def parse_count(key: str, value: str) -> int:
    """A non-negative integer ``limit`` / ``offset``."""
    if not value.isdigit() or len(value) > 18:
        raise bad(f"{key} must be a non-negative integer, got {value!r}")
    return int(value)


def identifier(text: str, where: str) -> str:
    """A column or relation name: plain, or double-quoted (``"my col"``); never empty."""
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        name = text[1:-1].replace('""', '"')
    else:
        name = text
        if any(ch in name for ch in ',()!:."*\\') or name != name.strip():
            raise bad(f"{where}: {text!r} is not a valid name", hint='quote a name holding special characters: "my col"')
    if not name or len(name) > 128 or "\x00" in name:
        raise bad(f"{where}: {text!r} is not a valid name")
    return name


def split_top(text: str, sep: str = ",") -> list[str]:
    """``text`` split on ``sep`` outside parentheses and double quotes (backslash escapes inside quotes)."""
    parts: list[str] = []
    depth, start, quoted, i = 0, 0, False, 0
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise bad(f"unbalanced parenthesis in {text!r}")
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if quoted or depth:
        raise bad(f"unbalanced {'quote' if quoted else 'parenthesis'} in {text!r}")
    parts.append(text[start:])
    return parts


def unquote_value(text: str) -> str:
    """A list or tree value: ``"a,b"`` -> ``a,b`` (``\\"`` and ``\\\\`` escapes), else as is."""
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        out, i, body = [], 0, text[1:-1]
        while i < len(body):
            if body[i] == "\\" and i + 1 < len(body):
                i += 1
            out.append(body[i])
            i += 1
        return "".join(out)
    return text


# --- select --------------------------------------------------------------------------------------------------


def parse_select(text: str, depth: int = 0) -> tuple[Item, ...]:
    """The items of a ``select=`` list (``*`` when empty)."""
    if depth > MAX_DEPTH:
        raise bad("select nests embedded relations too deeply")
    if not text.strip():
        return (Star(),)
    return tuple(parse_item(part.strip(), depth) for part in split_top(text))


def parse_item(text: str, depth: int) -> Item:
    if not text:
        raise bad("select has an empty item", hint="remove the doubled or trailing comma")
    if text == "*":
        return Star()
    if text.startswith("..."):
        raise bad("spread embeds (...relation) are not supported")
    alias: str | None = None
    head, paren, rest = text.partition("(")
    colon = _alias_colon(head)
    if colon >= 0:
        alias = identifier(head[:colon].strip(), "select alias")
        head = head[colon + 1 :].strip()
    if paren:
        if not rest.endswith(")"):
            raise bad(f"select: {text!r} is not an embedded relation", hint="write relation(col,col)")
        relation, *hints = head.strip().split("!")
        inner = False
        hint: str | None = None
        for h in hints:
            if h in ("inner", "left"):
                inner = h == "inner"
            elif hint is None:
                hint = identifier(h, "select hint")
            else:
                raise bad(f"select: {text!r} has more than one hint")
        return Embed(identifier(relation.strip(), "select"), parse_select(rest[:-1], depth + 1), alias, hint, inner)
    if "->" in head:
        raise bad("JSON paths (->, ->>) are not supported in select")
    name, _, cast = head.partition("::")
    if cast and cast.strip().lower() not in CASTS:
        raise bad(f"select: cannot cast to {cast!r}", hint="casts: " + ", ".join(sorted(CASTS)))
    return Field(identifier(name.strip(), "select"), alias, cast.strip().lower() or None)


def _alias_colon(head: str) -> int:
    """Index of the alias colon in ``alias:name`` (not the ``::`` of a cast), or -1."""
    i = head.find(":")
    while i >= 0:
        if head[i + 1 : i + 2] == ":":
            i = head.find(":", i + 2)
            continue
        return i if i == 0 or head[i - 1] != ":" else -1
    return -1


# --- order ---------------------------------------------------------------------------------------------------


def parse_order(text: str) -> list[OrderTerm]:
    """``col.desc.nullslast,col2`` -> terms."""
    terms = []
    for part in split_top(text):
        part = part.strip()
        if "(" in part:
            raise bad("ordering by an embedded relation's column is not supported", hint="use relation.order=col")
        column, *mods = part.split(".")
        desc, nulls = False, None
        for mod in mods:
            if mod in ("asc", "desc"):
                desc = mod == "desc"
            elif mod in ("nullsfirst", "nullslast"):
                nulls = mod[5:]
            else:
                raise bad(f"order: {mod!r} is not asc, desc, nullsfirst or nullslast", details=part)
        terms.append(OrderTerm(identifier(column.strip(), "order"), desc, nulls))
    return terms


# --- filters -------------------------------------------------------------------------------------------------


def parse_filter(column: str, value: str) -> BoolExp:
    """``col=[not.]op.value`` -> ``{"col": {"_op": value}}`` (or ``{"_not": ...}``)."""
    name = identifier(column, "filter")
    return _operation(name, value, column)


def _operation(name: str, text: str, context: str) -> BoolExp:
    negate = False
    if text.startswith("not."):
        negate, text = True, text[4:]
    op, dot, raw = text.partition(".")
    if not dot or op not in OPERATORS:
        raise bad(
            f"{context}: {op!r} is not an operator",
            details=f"{context}={text}",
            hint="write col=op.value with op one of " + ", ".join(OPERATORS),
        )
    target = OPERATORS[op]
    value: Any
    if op == "in":
        if not (raw.startswith("(") and raw.endswith(")")):
            raise bad(f"{context}: in takes a list in parentheses: in.(a,b)")
        inner = raw[1:-1]
        value = [unquote_value(v.strip()) for v in split_top(inner)] if inner.strip() else []
    elif op == "is":
        lowered = raw.lower()
        if lowered == "null":
            target, value = "_is_null", True
        elif lowered == "not_null":
            target, value = "_is_null", False
        elif lowered in ("true", "false"):
            value = lowered == "true"
        else:
            raise bad(f"{context}: is takes null, not_null, true or false, got {raw!r}")
    elif op in ("like", "ilike"):
        value = unquote_value(raw).replace("*", "%")
    else:
        value = unquote_value(raw)
    expression: BoolExp = {name: {target: value}}
    return {"_not": expression} if negate else expression


def parse_logic(keyword: str, value: str, depth: int) -> BoolExp:
    """``or=(a.eq.1,and(b.gt.2,b.lt.5))`` -> ``{"_or": [...]}`` (``not.or`` -> ``{"_not": {"_or": ...}}``)."""
    if depth > MAX_DEPTH:
        raise bad("a logic tree nests too deeply")
    negate = keyword.startswith("not.")
    op = keyword.removeprefix("not.")
    if not (value.startswith("(") and value.endswith(")")):
        raise bad(f"{keyword} takes a list in parentheses: {keyword}=(a.eq.1,b.eq.2)")
    terms: list[BoolExp] = []
    for part in split_top(value[1:-1]):
        part = part.strip()
        head = part.split("(", 1)[0]
        if head in ("or", "and", "not.or", "not.and"):
            terms.append(parse_logic(head, part[len(head) :], depth + 1))
            continue
        column, dot, rest = part.partition(".")
        if not dot:
            raise bad(f"{keyword}: {part!r} is not col.op.value", details=value)
        terms.append(_operation(identifier(column, keyword), rest, keyword))
    if not terms:
        raise bad(f"{keyword} has no condition")
    expression: BoolExp = {"_" + op: terms}
    return {"_not": expression} if negate else expression
