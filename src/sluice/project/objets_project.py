"""A ``sluice.yaml`` whose objects come from an ``Objets.json`` (``objets: {file: Objets.json}``).

The ``sluice.yaml`` gives what the ``Objets.json`` cannot: connections (credentials), the lake, the
bus and state, and objects of its own. Each ``Objets.json`` object's fields are mapped to work by
:func:`sluice.project.objets_mapping.map_object`. An entry of ``objects:`` whose ``id`` is an
``Objets.json`` object completes it instead of defining a new one: the keys it gives win (``sql``,
``source``, ``destination``, ``partition_by``...), its ``metadata`` is merged into the record's, and
``name``, ``parents`` and ``stage`` come from the record unless given. A destination without a ``mode``
takes the one ``AppendMode`` names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from sluice.errors import ConfigError
from sluice.project.model import ConnectionSpec, LeftOut, ObjectSpec, StageSpec
from sluice.project.objets_json import read_objets_json
from sluice.project.objets_mapping import ObjetsSettings, map_object
from sluice.project.objets_schedules import frequency_schedules
from sluice.project.yaml_tree import YamlMap
from sluice.scheduling.spec import ScheduleSpec

_GIVEN = ("source", "sql", "python", "destination", "lake", "partition_by", "stage")


@dataclasses.dataclass(frozen=True, slots=True)
class ObjetsObjects:
    """What the ``Objets.json`` adds to the project: its objects (merged with ``objects:``), those left out, notes."""

    objects: dict[int, ObjectSpec]
    left_out: Mapping[int, LeftOut]
    notes: tuple[str, ...]
    schedules: tuple[ScheduleSpec, ...] = ()
    """One per distinct ``Fréquence`` (:mod:`sluice.project.objets_schedules`)."""


def read_objets(
    yaml_path: Path,
    settings: ObjetsSettings,
    line: int | None,
    items: Any,
    own: dict[int, ObjectSpec],
    stages: tuple[StageSpec, ...],
    connections: Mapping[str, ConnectionSpec],
    problems: list[ConfigError],
) -> ObjetsObjects:
    """The project's objects: those of ``settings.file`` mapped to work, completed by ``own`` (read from
    ``items``, the raw ``objects:`` list of ``yaml_path``). Problems (a missing file, a bad record, a note
    under ``strict``) go to ``problems`` with their file and line."""
    path = (yaml_path.parent / settings.file).resolve()
    if not path.is_file():
        message = f"objets: file {settings.file!r} not found beside sluice.yaml; fix objets.file"
        problems.append(ConfigError(message, str(yaml_path), line))
        return ObjetsObjects(own, {}, ())
    project, found = read_objets_json(path)
    problems.extend(found)
    if project is None:
        return ObjetsObjects(own, {}, ())
    given = {item.get("id"): item for item in items if isinstance(item, YamlMap)} if isinstance(items, list) else {}
    objects: dict[int, ObjectSpec] = {}
    notes: list[str] = []
    for object_id, record in project.objects.items():
        mapped = map_object(record, settings, stages, connections)
        obj = mapped.object
        mine = own.get(object_id)
        item = given.get(object_id)
        if mine is not None:
            obj = _complete(obj, mine, item, mapped.mode)
        if mapped.note is not None and obj.kind == "noop":  # what sluice.yaml gives runs: no note then
            if settings.strict:
                problems.append(ConfigError(mapped.note.replace("; it stays a no-op", ""), str(path), record.origin.line))
            notes.append(mapped.note)
        objects[object_id] = obj
    merged = {**objects, **{oid: obj for oid, obj in own.items() if oid not in objects and oid not in project.left_out}}
    for oid in set(own) & set(project.left_out):
        notes.append(f"object {oid}: sluice.yaml completes it but {path.name} leaves it out ({project.left_out[oid].reason})")
    schedules = frequency_schedules(objects, [])  # its problems are read_objets_json's, reported above
    return ObjetsObjects(merged, project.left_out, tuple(notes), schedules)


def _complete(record: ObjectSpec, mine: ObjectSpec, item: YamlMap | None, mode: Any) -> ObjectSpec:
    """``record`` (from ``Objets.json``, mapped) with what the ``objects:`` entry ``item`` gives."""
    keys = set(item) if item is not None else set(_GIVEN)
    changes: dict[str, Any] = {name: getattr(mine, name) for name in _GIVEN if name in keys}
    if "partition_by" in keys:  # explicit partitions replace the date parts of NiveauHierarchique
        changes["date_parts"] = ()
    if "source" in keys or "sql" in keys or "python" in keys:
        changes.setdefault("source", mine.source)
    for name in ("name", "parents"):
        if name in keys:
            changes[name] = getattr(mine, name)
    for name in ("tags", "criticality"):  # only when the entry gives them: Criticité stays otherwise
        if item is not None and name in item:
            changes[name] = getattr(mine, name)
    destination = changes.get("destination")
    given_mode = isinstance(item, YamlMap) and isinstance(item.get("destination"), YamlMap) and "mode" in item["destination"]
    if destination is not None and mode is not None and not given_mode and (mode != "merge" or destination.key):
        changes["destination"] = msgspec.structs.replace(destination, mode=mode)
    changes["metadata"] = {**record.metadata, **mine.metadata}
    changes["origin"] = mine.origin
    return dataclasses.replace(record, **changes)
