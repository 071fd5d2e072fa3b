"""Nesting depth of a GraphQL document (measured before it is parsed) and of decoded variables.

graphql-core's parser, its validation and Python's :func:`json.loads` recurse once (or more) per level of
nesting: a document or variables nested some hundreds of levels deep end in a ``RecursionError`` (a 500).
:func:`document_depth` counts the brackets (``{``, ``[``, ``(``) outside strings and comments with regular
expressions and :func:`itertools.accumulate` (no recursion, linear in the text); :func:`value_depth` walks
decoded variables with a stack. A request nested deeper than :data:`MAX_NESTING` is refused with a 400
``query-too-deep`` before graphql-core (or the SQL compiler) sees it; a JSON body too deep for
:func:`json.loads` itself is refused the same way by its caller (it raises ``RecursionError``).

The bound is above what a real query needs (``limits.graphql.max_depth`` defaults to 10 selection levels,
each a pair of braces plus its arguments' brackets) and below where the parsers overflow (graphql-core 3.2's
parser overflows Python's default recursion limit of 1000 near 300 nested brackets in a value).
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

from sluice.api.gate import DataApiError

MAX_NESTING = 128
"""The deepest bracket nesting a document or a JSON request body may have."""

# A GraphQL block string, string or comment (spec §2.1.7, §2.9.4); their brackets do not nest anything.
_GRAPHQL_SKIP = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*(?:"""|$)|"(?:[^"\\\n]|\\.)*"?|#[^\n\r]*', re.DOTALL)
_GRAPHQL_OTHER = re.compile(r"[^{}\[\]()]+")


def document_depth(text: str) -> int:
    """The deepest nesting of ``{``/``[``/``(`` in the GraphQL document ``text`` (0 for none)."""
    brackets = _GRAPHQL_OTHER.sub("", _GRAPHQL_SKIP.sub("", text))
    return max(accumulate(1 if c in "{[(" else -1 for c in brackets), default=0)


def value_depth(value: Any, limit: int = MAX_NESTING) -> int:
    """The nesting depth of the decoded JSON ``value`` (0 for a scalar, 1 for a flat object or list), walked
    without recursion; it stops counting past ``limit`` (returns ``limit + 1``)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            depth += 1
            if depth > limit:
                return depth
            deepest = max(deepest, depth)
            stack.extend((child, depth) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def too_deep(what: str) -> DataApiError:
    """The 400 ``query-too-deep`` refusal of a request whose ``what`` ("document", "variables") nests too deep."""
    return DataApiError(f"the {what} is nested more than {MAX_NESTING} levels deep", code="query-too-deep")


def check_document(text: str) -> None:
    """Raise :func:`too_deep` when the document ``text`` nests deeper than :data:`MAX_NESTING`."""
    if document_depth(text) > MAX_NESTING:
        raise too_deep("document")


def check_variables(variables: Any) -> None:
    """Raise :func:`too_deep` when the decoded ``variables`` nest deeper than :data:`MAX_NESTING`."""
    if value_depth(variables) > MAX_NESTING:
        raise too_deep("variables")
