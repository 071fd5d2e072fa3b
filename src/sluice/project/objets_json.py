"""Read the seed's ``Objets.json``: a JSON array of ``{"IdObjet": int, "IdObjet_Parent": null | int | [int]}``.

An object with several parents may appear in several records; their parents are merged. Every
other field is kept as metadata (the first record's value wins). Stages follow the id ranges.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeGuard

from sluice.errors import ConfigError
from sluice.project.model import DEFAULT_STAGES, ObjectSpec, Origin, Project, stage_for_id

ID_FIELD = "IdObjet"
PARENT_FIELD = "IdObjet_Parent"
NAME_FIELDS = ("Nom", "NomObjet", "name", "Name")


def _records_with_lines(text: str, file: str) -> list[tuple[int, Any]]:
    """Decode a JSON array element by element so each record knows its line."""
    decoder = json.JSONDecoder()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"malformed JSON: {exc.msg} (column {exc.colno})", file, exc.lineno) from exc
    if not isinstance(data, list):
        raise ConfigError("Objets.json must be a JSON array of records with IdObjet and IdObjet_Parent", file, 1)
    records: list[tuple[int, Any]] = []
    index = text.index("[") + 1
    while True:
        while index < len(text) and text[index] in " \t\r\n,":
            index += 1
        if index >= len(text) or text[index] == "]":
            break
        value, end = decoder.raw_decode(text, index)
        records.append((text.count("\n", 0, index) + 1, value))
        index = end
    return records


def _name(object_id: int, metadata: dict[str, Any]) -> str:
    """The record's name field when it is a usable identifier, else ``obj_<id>``."""
    for field in NAME_FIELDS:
        value = metadata.get(field)
        if isinstance(value, str) and value.isidentifier():
            return value
    return f"obj_{object_id}"


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def read_objets_json(path: Path) -> tuple[Project | None, list[ConfigError]]:
    """Parse an ``Objets.json``. Returns the project (None on problems) and the problems found."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", file) from exc
    problems: list[ConfigError] = []
    parents: dict[int, list[int]] = {}
    metadata: dict[int, dict[str, Any]] = {}
    lines: dict[int, int] = {}
    for line, record in _records_with_lines(text, file):
        if not isinstance(record, dict):
            problems.append(ConfigError(f"each record must be an object with IdObjet, got {record!r}", file, line))
            continue
        object_id = record.get(ID_FIELD)
        if not _is_int(object_id):
            problems.append(ConfigError(f"malformed {ID_FIELD} {object_id!r}: ids must be integers", file, line))
            continue
        raw_parents = record.get(PARENT_FIELD)
        values = raw_parents if isinstance(raw_parents, list) else ([] if raw_parents is None else [raw_parents])
        merged = parents.setdefault(object_id, [])
        lines.setdefault(object_id, line)
        for value in values:
            if not _is_int(value):
                problems.append(
                    ConfigError(
                        f"object {object_id}: malformed {PARENT_FIELD} {value!r}: parent ids must be integers or null", file, line
                    )
                )
            elif value not in merged:
                merged.append(value)
        extra = metadata.setdefault(object_id, {})
        for key, value in record.items():
            if key not in (ID_FIELD, PARENT_FIELD):
                extra.setdefault(key, value)
    objects: dict[int, ObjectSpec] = {}
    for object_id, object_parents in parents.items():
        stage = stage_for_id(object_id, DEFAULT_STAGES)
        if stage is None:
            ranges = ", ".join(f"{s.name} {s.describe_ids()}" for s in DEFAULT_STAGES)
            problems.append(
                ConfigError(f"object {object_id} matches no stage ({ranges}); use ids in those ranges", file, lines[object_id])
            )
            continue
        objects[object_id] = ObjectSpec(
            id=object_id,
            name=_name(object_id, metadata[object_id]),
            stage=stage.name,
            parents=tuple(object_parents),
            origin=Origin(file, lines[object_id]),
            metadata=metadata[object_id],
        )
    project = Project(
        name=path.stem,
        root=path.parent.resolve(),
        source_file=path.resolve(),
        objects=objects,
        connections={},
    )
    return project, problems
