"""Check a mapping of options against a typed structure, collecting every problem with its line.

>>> from sluice.plugins.base import Settings
>>> class Demo(Settings):
...     path: str
...     block_size: int = 1024
>>> value, problems = convert_options(Demo, {"path": "x.csv", "blok_size": 2}, label="object 1001: source", file="sluice.yaml")
>>> print(problems[0])
sluice.yaml: object 1001: source: unknown option 'blok_size'. Did you mean 'block_size'? Known options: path, block_size

Every key is checked on its own (unknown keys with "Did you mean", wrong types, values out of range,
each at the line of its key), then missing required options, then the structure's own cross-field
checks (its ``__post_init__``), so a user sees every mistake at once rather than the first.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Mapping
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import msgspec

from sluice.errors import ConfigError, did_you_mean
from sluice.plugins.base import Settings

S = TypeVar("S", bound=Settings)
_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_INVALID = re.compile(r"^Invalid (?:enum )?value '(?P<value>[^']*)'")


@functools.cache
def _fields(settings: type[Settings]) -> dict[str, msgspec.structs.FieldInfo]:
    """``msgspec.structs.fields(settings)`` by option name, computed once per class: msgspec evaluates the class's
    annotations on each call (about 1 ms), which was most of loading a 5,000-object project."""
    return {field.encode_name: field for field in msgspec.structs.fields(settings)}


def field_names(settings: type[Settings]) -> list[str]:
    """The option names of ``settings``, in declaration order."""
    return list(_fields(settings))


def convert_options(
    settings: type[S],
    raw: Mapping[str, Any],
    *,
    label: str,
    file: str | None,
    line: int | None = None,
    key_lines: Mapping[str, int] | None = None,
    strict: bool = True,
    ignore: Collection[str] = (),
    what: str = "option",
    placeholder: Mapping[str, Any] | None = None,
) -> tuple[S | None, list[ConfigError]]:
    """``raw`` as a ``settings`` instance, or None and the problems (ConfigErrors naming ``label``, file and line).

    ``key_lines`` gives the line of each key (default: ``line``); ``strict=False`` accepts strings for
    numbers and booleans (URL query strings); keys in ``ignore`` are left out (the caller reads them). An error of
    the settings' ``__post_init__`` that starts with a given key (``min_interval: ...``) is put at that key's line.
    With ``placeholder`` (values for every required key, as for :func:`partial_settings`), a failed conversion
    also runs each key's own checks (the ``__post_init__`` with that key alone beside ``placeholder``), so the
    problems of independent keys are all reported at once rather than the first one's.
    """
    value, problems = _convert(settings, raw, label, file, line, key_lines or {}, strict, ignore, what)
    if value is not None or placeholder is None:
        return value, problems
    seen = {str(problem) for problem in problems}
    for key, given in raw.items():
        if key in ignore or key not in _fields(settings):
            continue
        alone = {**placeholder, key: given}
        for problem in _convert(settings, alone, label, file, line, key_lines or {}, strict, ignore, what)[1]:
            if str(problem) not in seen:
                seen.add(str(problem))
                problems.append(problem)
    return None, problems


def _convert(
    settings: type[S],
    raw: Mapping[str, Any],
    label: str,
    file: str | None,
    line: int | None,
    lines: Mapping[str, int],
    strict: bool,
    ignore: Collection[str],
    what: str,
) -> tuple[S | None, list[ConfigError]]:
    fields = _fields(settings)
    problems: list[ConfigError] = []
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ignore:
            continue
        where = lines.get(key, line)
        field = fields.get(key)
        if field is None:
            hint = did_you_mean(str(key), fields)
            known = ", ".join(fields) or "none"
            problems.append(ConfigError(f"{label}: unknown {what} {str(key)!r}.{hint} Known {what}s: {known}", file, where))
            continue
        try:
            msgspec.convert(value, field.type, strict=strict)
        except msgspec.ValidationError as exc:
            choices = choices_at(field.type, error_path(exc))
            wrong = _INVALID.search(str(exc))
            given = wrong.group("value") if wrong else str(value)
            hint = f".{did_you_mean(given, choices)} Choose one of: {', '.join(choices)}" if choices else ""
            if isinstance(value, bool) and "got bool" in str(exc).replace("`", ""):
                hint += " (YAML reads unquoted yes, no, on, off, true and false as booleans: quote the value, e.g. 'off')"
            named = named_keys(field.type, value, error_path(exc), strict)
            problems.append(ConfigError(f"{label}: {explain(key, exc, value, named)}{hint}", file, where))
            continue
        values[key] = value
    missing = [name for name, field in fields.items() if field.required and name not in raw]
    if missing:
        names = ", ".join(repr(name) for name in missing)
        problems.append(ConfigError(f"{label}: missing required {what}{'s' if len(missing) > 1 else ''} {names}", file, line))
    if problems:
        return None, problems
    try:
        return msgspec.convert(values, settings, strict=strict), []
    except msgspec.ValidationError as exc:
        message = explain("", exc, None)
        key = message.partition(":")[0]  # a __post_init__ error about one key starts with it: "min_interval: ..."
        return None, [ConfigError(f"{label}: {message}", file, lines.get(key, line) if key in raw else line)]


def partial_settings(settings: type[S], raw: Mapping[str, Any], placeholder: Mapping[str, Any]) -> tuple[S, set[str]]:
    """The settings of an entry with a wrong key, so the checks of its other keys still run and every problem of a
    section is reported at once: those of its keys that are right by themselves (each converted with ``placeholder``,
    which stands for the required keys), the wrong ones at their defaults or ``placeholder``'s values; and the names of
    the right keys (a check of another key asks whether it may trust a value). ``settings`` must accept
    ``placeholder`` with any one right key (no checks across keys)."""
    valid = {
        key
        for key, value in raw.items()
        if isinstance(key, str) and convert_options(settings, {**placeholder, key: value}, label="", file=None)[0] is not None
    }
    return msgspec.convert({**placeholder, **{key: raw[key] for key in valid}}, settings), valid


def literal_choices(annotation: Any) -> list[str]:
    """The allowed values of a ``Literal`` option (inside ``Annotated`` or ``| None``), else []."""
    origin = get_origin(annotation)
    if origin is Literal:
        return [str(choice) for choice in get_args(annotation)]
    if origin is Annotated:
        return literal_choices(get_args(annotation)[0])
    if origin in (Union, UnionType):
        return [choice for arg in get_args(annotation) for choice in literal_choices(arg)]
    return []


def error_path(exc: msgspec.ValidationError) -> str:
    """The path msgspec names in ``exc`` below the converted value (``.paginate.style``, ``[0].interval``), or ''."""
    match = _AT.search(str(exc))
    return match.group("path") if match else ""


def choices_at(annotation: Any, path: str) -> list[str]:
    """The allowed values at ``path`` below ``annotation``: a ``Literal``'s values, or the tags of a tagged
    union of structures when the path ends at their tag field (``paginate.style``); [] when there is no
    fixed set. ``path`` is msgspec's (``.key``, ``[0]``, ``[...]``)."""
    parts = re.findall(r"\.([^.\[]+)|\[[^\]]*\]", path)
    return _choices(annotation, [part or "[]" for part in parts])


def _choices(annotation: Any, parts: list[str]) -> list[str]:
    if not parts:
        return literal_choices(annotation)
    head, rest = parts[0], parts[1:]
    origin = get_origin(annotation)
    if origin is Annotated:
        return _choices(get_args(annotation)[0], parts)
    args = get_args(annotation)
    if origin in (Union, UnionType):
        structs = [arg for arg in args if isinstance(arg, type) and issubclass(arg, msgspec.Struct)]
        tags = [str(s.__struct_config__.tag) for s in structs if s.__struct_config__.tag_field == head]
        if tags and not rest:
            return tags
        return next((found for arg in args if (found := _choices(arg, parts))), [])
    if head == "[]":  # a list's, tuple's or dict's items: the last type argument that is not `...`
        items = [arg for arg in args if arg is not Ellipsis]
        return _choices(items[-1], rest) if items else []
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        fields = {field.encode_name: field.type for field in msgspec.structs.fields(annotation)}
        return _choices(fields[head], rest) if head in fields else []
    return []


def _unwrapped(annotation: Any) -> Any:
    """``annotation`` without ``Annotated`` and ``| None``."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
            continue
        if get_origin(annotation) in (Union, UnionType):
            kept = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(kept) == 1:
                annotation = kept[0]
                continue
        return annotation


def _fits(value: Any, annotation: Any, strict: bool) -> bool:
    try:
        msgspec.convert(value, annotation, strict=strict)
    except msgspec.ValidationError:
        return False
    return True


def named_keys(annotation: Any, value: Any, path: str, strict: bool = True) -> str:
    """msgspec's ``path`` (``[...].mask``) with each ``[...]``, a mapping's key msgspec does not name, replaced by the
    key whose value does not convert (``[emp].mask``); the path unchanged where it cannot be told."""
    if "[...]" not in path:
        return path
    named: list[str] = []
    steps = re.findall(r"\.[^.\[]+|\[[^\]]*\]", path)
    for i, step in enumerate(steps):
        annotation = _unwrapped(annotation)
        args = get_args(annotation)
        if step == "[...]" and isinstance(value, Mapping) and args:
            bad = next((k for k, v in value.items() if not _fits(v, args[-1], strict)), None)
            if bad is None:
                return "".join(named + steps[i:])
            named.append(f"[{bad}]")
            value, annotation = value[bad], args[-1]
        elif (
            step.startswith(".")
            and isinstance(value, Mapping)
            and isinstance(annotation, type)
            and issubclass(annotation, msgspec.Struct)
        ):
            fields = {f.encode_name: f.type for f in msgspec.structs.fields(annotation)}
            named.append(step)
            value, annotation = value.get(step[1:]), fields.get(step[1:], Any)
        elif step[1:-1].isdigit() and isinstance(value, list | tuple) and args and int(step[1:-1]) < len(value):
            named.append(step)
            value, annotation = value[int(step[1:-1])], args[0] if get_origin(annotation) is not tuple else Any
        else:
            return "".join(named + steps[i:])
    return "".join(named)


def explain(key: str, exc: msgspec.ValidationError, value: Any, path: str | None = None) -> str:
    """msgspec's message as ``key[1]: expected int, got str`` (``got 0`` for a value out of range); ``path``: the
    error's path to show instead of msgspec's (:func:`named_keys`)."""
    text = str(exc)
    match = _AT.search(text)
    found = ""
    if match:
        found, text = match.group("path"), text[: match.start()]
    path = found if path is None else path
    text = text.replace("`", "")
    if text.startswith("Expected") and ", got" not in text and value is not None and not path:
        text += f", got {value!r}"
    text = text[:1].lower() + text[1:]
    where = f"{key}{path}" if key or path else ""
    return f"{where}: {text}" if where else text
