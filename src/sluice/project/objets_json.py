"""Read the seed's ``Objets.json``: a JSON array of records with ``IdObjet`` and ``IdObjet_Parent``.

The shapes found in the field are accepted:

- ``IdObjet_Parent``: null, an id (``1001`` or ``"1001"``), a list of ids, or one string holding several
  ids separated by commas or semicolons (``"2001,2002, 2005"``, ``"2001;2002"``). An object with several
  parents may also appear in several records; their parents are merged.
- ``NomObjet`` (or ``Nom``, ``name``): unique within a stage, so ``Customers`` may be both a raw and a
  standardized object. A name that is not an identifier gives ``obj_<id>``.
- ``Zone`` (``1-Raw``, ``2-Standardized``, ``3-Application``; case and accents ignored): the object's
  stage; it must agree with the id's range (1000-1999, 2000-2999, 3000+) when the id has one.
- ``EtatObjet``: an object that is not active (``actif``, ``active``) is left out of every plan, and so
  are its descendants (:attr:`Project.left_out`, shown by ``sluice plan``).

- ``Fréquence`` (a cron expression) and ``Criticité`` (``low``, ``high``): schedules and
  :attr:`ObjectSpec.criticality` (:mod:`sluice.project.objets_schedules`).

Every other field (``URL``, ``Format``...) is kept as metadata (the first record's value wins; so are those two).
Read on its own, an ``Objets.json`` runs no work (its objects are no-ops, and a note says so when some carry a
``URL``); a ``sluice.yaml`` beside it with ``objets: {file: Objets.json}`` maps the fields to sources, lake
layers and partitions (:mod:`sluice.project.objets_mapping`, docs/objets-json.md).
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import Any, TypeGuard

from sluice.errors import ConfigError
from sluice.project.model import DEFAULT_STAGES, LeftOut, ObjectSpec, Origin, Project, StageSpec, stage_for_id
from sluice.project.objets_schedules import criticality, frequency_schedules
from sluice.project.yaml_tree import read_text

ID_FIELD = "IdObjet"
PARENT_FIELD = "IdObjet_Parent"
ZONE_FIELD = "Zone"
STATE_FIELD = "EtatObjet"
NAME_FIELDS = ("Nom", "NomObjet", "name", "Name")
ACTIVE_STATES = frozenset({"actif", "active", "activ", "activee"})
# Words naming each zone, in DEFAULT_STAGES order (accents and case removed).
ZONE_WORDS: tuple[frozenset[str], ...] = (
    frozenset({"raw", "brut", "brute", "ingest", "ingestion", "source", "sources"}),
    frozenset({"standardized", "standardised", "standardise", "standardisee", "standard", "standardize", "standardisation"}),
    frozenset({"application", "applications", "app", "apps"}),
)
_ZONE = re.compile(r"(?:([0-9]+)\s*[-_.:)]?\s*)?([a-z]*)")
_PARENT_SEPARATORS = re.compile(r"[,;]")


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


def plain_word(text: str) -> str:
    """``text`` without accents, in lower case, stripped: ``"Standardisé "`` -> ``"standardise"``."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).strip().lower()


def parse_parents(value: Any) -> list[int] | None:
    """The parent ids ``IdObjet_Parent`` holds, or None when it is malformed.

    >>> parse_parents("2001,2002; 2005"), parse_parents(1001), parse_parents(["1001", 1002]), parse_parents(None)
    ([2001, 2002, 2005], [1001], [1001, 1002], [])
    """
    if value is None:
        return []
    if _is_int(value):
        return [value]
    if isinstance(value, str):
        pieces = [piece.strip() for piece in _PARENT_SEPARATORS.split(value)]
        if not all(piece.isdigit() and piece.isascii() for piece in pieces if piece):
            return None
        return [int(piece) for piece in pieces if piece]
    if isinstance(value, list):
        found: list[int] = []
        for item in value:
            if _is_int(item):
                found.append(item)
            elif isinstance(item, str) and item.strip().isdigit() and item.strip().isascii():
                found.append(int(item.strip()))
            else:
                return None
        return found
    return None


def zone_stage(value: Any, stages: tuple[StageSpec, ...] = DEFAULT_STAGES) -> StageSpec | None:
    """The stage a ``Zone`` names (``1-Raw``, ``2-Standardisé``, ``application``...), or None when it names none.

    >>> zone_stage("2-Standardized").name, zone_stage("1 - RAW").name, zone_stage("3-Applicatión").name
    ('standardize', 'ingest', 'application')
    """
    if not isinstance(value, str):
        return None
    match = _ZONE.fullmatch(plain_word(value))
    if match is None:
        return None
    number, word = match.group(1), match.group(2)
    by_word = next((index for index, words in enumerate(ZONE_WORDS) if word in words), None) if word else None
    by_number = int(number) - 1 if number is not None else None
    if by_number is not None and not 0 <= by_number < len(stages):
        return None
    if word and by_word is None:
        return None
    if by_word is not None and by_number is not None and by_word != by_number:
        return None
    index = by_number if by_number is not None else by_word
    return None if index is None or index >= len(stages) else stages[index]


def is_active(value: Any) -> bool:
    """Whether an ``EtatObjet`` value means active: missing, ``actif``, ``Actif``, ``active``, ``true``."""
    if value is None or value is True:
        return True
    return isinstance(value, str) and plain_word(value) in ACTIVE_STATES


def read_objets_json(path: Path) -> tuple[Project | None, list[ConfigError]]:
    """Parse an ``Objets.json``. Returns the project (None on problems) and the problems found."""
    file = str(path)
    text = read_text(path)
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
        values = parse_parents(raw_parents)
        merged = parents.setdefault(object_id, [])
        lines.setdefault(object_id, line)
        if values is None:
            bad = raw_parents
            if isinstance(raw_parents, list):
                bad = next(v for v in raw_parents if parse_parents([v]) is None)
            problems.append(
                ConfigError(
                    f"object {object_id}: malformed {PARENT_FIELD} {bad!r}: give null, a parent id, a list of ids "
                    'or ids separated by commas or semicolons ("2001, 2002")',
                    file,
                    line,
                )
            )
            values = []
        for value in values:
            if value not in merged:
                merged.append(value)
        extra = metadata.setdefault(object_id, {})
        for key, value in record.items():
            if key not in (ID_FIELD, PARENT_FIELD):
                extra.setdefault(key, value)
    objects: dict[int, ObjectSpec] = {}
    inactive: dict[int, str] = {}
    for object_id, object_parents in parents.items():
        stage = _stage(object_id, metadata[object_id], file, lines[object_id], problems)
        if stage is None:
            continue
        objects[object_id] = ObjectSpec(
            id=object_id,
            name=_name(object_id, metadata[object_id]),
            stage=stage.name,
            parents=tuple(object_parents),
            origin=Origin(file, lines[object_id]),
            metadata=metadata[object_id],
            criticality=criticality(object_id, metadata[object_id], file, lines[object_id], problems),
        )
        state = metadata[object_id].get(STATE_FIELD)
        if not is_active(state):
            inactive[object_id] = f"{STATE_FIELD} is {state!r}, not active"
    left_out = _left_out(objects, inactive)
    with_url = sorted(oid for oid, obj in objects.items() if obj.metadata.get("URL") and oid not in left_out)
    notes = (
        (
            f"{len(with_url)} object{'s' if len(with_url) != 1 else ''} carry a URL ({', '.join(map(str, with_url[:5]))}"
            f"{'...' if len(with_url) > 5 else ''}) but an Objets.json alone runs no work; put a sluice.yaml beside it "
            f"with 'objets: {{file: {path.name}}}' to map URL, Format and the other fields (docs/objets-json.md)",
        )
        if with_url
        else ()
    )
    scheduled = {oid: obj for oid, obj in objects.items() if oid not in left_out}
    schedules = frequency_schedules(scheduled, problems)
    project = Project(
        name=path.stem,
        root=path.parent.resolve(),
        source_file=path.resolve(),
        objects={oid: obj for oid, obj in objects.items() if oid not in left_out},
        connections={},
        left_out=left_out,
        notes=notes,
        schedules=schedules,
    )
    return project, problems


def _stage(object_id: int, metadata: dict[str, Any], file: str, line: int, problems: list[ConfigError]) -> StageSpec | None:
    """The object's stage: its ``Zone`` when it has one (checked against the id's range), else the id's range."""
    by_id = stage_for_id(object_id, DEFAULT_STAGES)
    ranges = ", ".join(f"{s.name} {s.describe_ids()}" for s in DEFAULT_STAGES)
    zone = metadata.get(ZONE_FIELD)
    if zone is None:
        if by_id is None:
            problems.append(ConfigError(f"object {object_id} matches no stage ({ranges}); use ids in those ranges", file, line))
        return by_id
    by_zone = zone_stage(zone)
    if by_zone is None:
        problems.append(
            ConfigError(
                f"object {object_id}: unknown {ZONE_FIELD} {zone!r}; use 1-Raw, 2-Standardized or 3-Application", file, line
            )
        )
        return None
    if by_id is not None and by_id is not by_zone:
        problems.append(
            ConfigError(
                f"object {object_id}: {ZONE_FIELD} {zone!r} is stage {by_zone.name} ({by_zone.describe_ids()}) but id "
                f"{object_id} is in stage {by_id.name} ({by_id.describe_ids()}); fix the Zone or the id",
                file,
                line,
            )
        )
        return None
    return by_zone


def _left_out(objects: dict[int, ObjectSpec], inactive: dict[int, str]) -> dict[int, LeftOut]:
    """The inactive objects and every descendant of one, each with why it is left out."""
    reasons = dict(inactive)
    changed = True
    while changed:
        changed = False
        for object_id, obj in objects.items():
            if object_id in reasons:
                continue
            parent = next((p for p in obj.parents if p in reasons), None)
            if parent is not None:
                cause = objects[parent]
                reasons[object_id] = f"parent {parent} ({cause.name}) is left out"
                changed = True
    return {oid: LeftOut(objects[oid], reasons[oid]) for oid in objects if oid in reasons}
