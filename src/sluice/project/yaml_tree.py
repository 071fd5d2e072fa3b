"""YAML with lines: every mapping knows the line of each of its keys; ``${VAR}`` is expanded in every string.

>>> tree = load_yaml("a: 1\\nb:\\n  c: ${NOT_SET:-x}\\n", "f.yaml")
>>> tree["b"]["c"], tree.line_of("b"), tree["b"].line_of("c")
('x', 2, 3)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from sluice.errors import ConfigError

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class YamlMap(dict[Any, Any]):
    """A mapping read from YAML: ``line`` (where it starts), ``key_lines`` (where each key is), duplicate keys,
    ``item_lines`` (where each item of a key's list is: ``- emp`` lines; none for a mapping made by hand)."""

    line: int | None
    key_lines: dict[str, int]
    duplicates: list[tuple[str, int]]
    item_lines: Mapping[str, tuple[int, ...]] = MappingProxyType({})

    def line_of(self, key: Any) -> int | None:
        """The line of ``key``, or the mapping's own line."""
        return self.key_lines.get(str(key), self.line)


class _LineLoader(yaml.SafeLoader):
    """A safe loader whose mappings are :class:`YamlMap` (pure Python: its error messages name the character at fault)."""


class _FastLineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The same, parsing with libyaml when PyYAML has it (about 4x faster on a 5,000-object project); a file it
    refuses is parsed again by :class:`_LineLoader` for the error's words."""


UNHASHABLE_KEY = (
    "a value starting with '{' or '[' is read as a mapping or a list, and one is used here as a key "
    "(an unquoted {{ ds }}?): quote the value, e.g. sql: \"select '{{ ds }}'\""
)


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct_mapping(loader: _LineLoader | _FastLineLoader, node: yaml.MappingNode) -> YamlMap:
    own = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE_TAG)
    loader.flatten_mapping(node)  # the keys of `<<: *anchor` merges first, then the mapping's own
    merged = len(node.value) - own
    mapping = YamlMap()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    mapping.duplicates = []
    mapping.item_lines = {}
    own_keys: set[str] = set()
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, (dict, list)):  # `sql: {{ ds }}` unquoted: a flow mapping whose key is a mapping
            raise yaml.constructor.ConstructorError(None, None, UNHASHABLE_KEY, key_node.start_mark)
        line = key_node.start_mark.line + 1
        if index >= merged:  # a key merged in and given again overrides it (YAML's merge key), not a duplicate
            if str(key) in own_keys:
                mapping.duplicates.append((str(key), line))
            own_keys.add(str(key))
        mapping.key_lines[str(key)] = line
        if isinstance(value_node, yaml.SequenceNode):
            mapping.item_lines[str(key)] = tuple(item.start_mark.line + 1 for item in value_node.value)
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_FastLineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


KeyPath = tuple[str | int, ...]


def path_lines(value: Any, path: KeyPath = ()) -> dict[KeyPath, int]:
    """The line of every key and list item in ``value`` (a :class:`YamlMap`), by its path from ``value``:
    ``("tables",)`` the key, ``("tables", 1)`` the second item of its list, ``("columns", "emp", "drop", 0)``."""
    lines: dict[KeyPath, int] = {}
    if isinstance(value, YamlMap):
        for key, line in value.key_lines.items():
            lines[(*path, key)] = line
        for key, items in value.item_lines.items():
            lines.update({(*path, key, index): line for index, line in enumerate(items)})
        for key, item in value.items():
            lines.update(path_lines(item, (*path, str(key))))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            lines.update(path_lines(item, (*path, index)))
    return lines


def duplicate_names(mapping: YamlMap, what: str, file: str | None) -> list[ConfigError]:
    """One problem per name given twice in a section that maps names to entries (``connections:``, ``schedules:``,
    ``sensors:``, ``stages:``, alert ``channels:``), at the line of the second: YAML keeps only the last one, so the
    first would be dropped silently. ``what`` names an entry (``schedule``). Duplicate keys inside an entry are the
    checker's ("key 'x' is given twice; keep one")."""
    return [
        ConfigError(
            f"{what} '{key}' is defined twice (YAML would keep only this one); {what} names must be unique: rename one",
            file,
            line,
        )
        for key, line in mapping.duplicates
    ]


def read_text(path: Path) -> str:
    """A definition file's text; ConfigError (one line, with the line of a bad byte) when unreadable or not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", str(path)) from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"byte 0x{data[exc.start]:02x} is not UTF-8 text; save the file as UTF-8 (it looks like {_guess(data)})",
            str(path),
            line,
        ) from None


def _guess(data: bytes) -> str:
    try:
        data.decode("cp1252")
    except UnicodeDecodeError:
        return "another encoding"
    return "Latin-1 or Windows-1252"


def load_yaml(text: str, file: str) -> Any:
    """Parse ``text`` (mappings as :class:`YamlMap`). Raises ConfigError with the line of a syntax error."""
    try:
        return yaml.load(text, Loader=_FastLineLoader)  # noqa: S506 - derives from (C)SafeLoader
    except yaml.YAMLError:
        pass
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - _LineLoader derives from SafeLoader
    except yaml.MarkedYAMLError as exc:
        words, at_context = _plain_words(exc)
        mark = (exc.context_mark if at_context else None) or exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise ConfigError(f"malformed YAML: {words}", file, line, column) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML: {exc}", file) from exc


_PLAIN: tuple[tuple[str, str, bool], ...] = (
    # (what the parser says, in plain words, whether the place is where the construct started)
    ("character '\\t'", "a tab character cannot indent: indent with spaces", False),
    ("could not find expected ':'", "this mapping key has no ':' (write key: value)", True),
    ("quoted scalar", "unclosed quote: this quoted value has no closing quote", True),
    ("flow sequence", "unclosed '[': this list needs ',' between items and a closing ']'", True),
    ("flow mapping", "unclosed '{': this mapping needs ',' between entries and a closing '}'", True),
    ("expected <block end>", "this line's indentation does not match the lines above it", False),
    ("mapping values are not allowed here", "a second ':' on this line: quote a value that holds ': '", False),
    ("block sequence", "a '- ' list item is not aligned with the items above it", False),
)


def _plain_words(exc: yaml.MarkedYAMLError) -> tuple[str, bool]:
    """What a YAML syntax error means in plain words, with the parser's own words kept short."""
    said = " ".join(part for part in (exc.context, exc.problem) if part)
    for fragment, words, at_context in _PLAIN:
        if fragment in said:
            return f"{words} (parser: {exc.problem})", at_context
    return str(exc.problem or exc.context), False


def expand_env(text: str, where: str) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}`` with environment values; ConfigError naming an unset VAR."""

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value is not None:
            return value
        if default is not None:
            return default
        raise ConfigError(
            f"{where} uses ${{{name}}} but that environment variable is not set; set it or write ${{{name}:-default}}"
        )

    return _ENV.sub(repl, text)


class UnsetVariable(ConfigError):
    """A ``${VAR}`` with no value and no default; ``where`` is the key path that uses it (``connections.wh``)."""

    def __init__(self, message: str, source: str | None, line: int | None, where: str) -> None:
        self.where = where
        super().__init__(message, source, line)


def expand_tree(value: Any, file: str, problems: list[ConfigError], where: str = "", line: int | None = None) -> Any:
    """``value`` with every string expanded (:func:`expand_env`); unset variables are added to ``problems``."""
    if isinstance(value, YamlMap):
        for key in list(value):
            path = f"{where}.{key}" if where else str(key)
            value[key] = expand_tree(value[key], file, problems, path, value.line_of(key))
        return value
    if isinstance(value, list):
        return [expand_tree(item, file, problems, f"{where}[{index}]", line) for index, item in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        try:
            return expand_env(value, f"'{where}'")
        except ConfigError as exc:
            problems.append(UnsetVariable(exc.message, file, line, where))
    return value


def plain(value: Any) -> Any:
    """``value`` with every :class:`YamlMap` turned into a plain dict (for hashing and msgspec)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value
