"""An ``Objets.json``'s ``Fréquence`` (a cron expression) and ``Criticité`` (``low``, ``high``).

Objects sharing a ``Fréquence`` become one schedule, named ``objets:<cron>``, whose targets are those objects
(their ancestors run with them, as every plan does); the schedule's time zone is UTC and its catch-up policy
``latest`` (a ``schedules:`` entry in ``sluice.yaml`` gives other settings). The words found in older files
(``Horaire``, ``Quotidienne``, ``Hebdomadaire``, ``Mensuelle``) stand for the cron expressions of
:data:`FREQUENCY_WORDS`. ``Criticité`` becomes :attr:`ObjectSpec.criticality`.

>>> frequency_cron("Quotidienne"), frequency_cron("*/15 * * * *"), frequency_cron("souvent")
('0 0 * * *', '*/15 * * * *', None)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sluice.errors import ConfigError
from sluice.project.model import ObjectSpec
from sluice.scheduling.cron import check_cron
from sluice.scheduling.spec import ScheduleSpec

FREQUENCY_FIELDS = ("Fréquence", "Frequence", "Frequency")
CRITICALITY_FIELDS = ("Criticité", "Criticite", "Criticality")
FREQUENCY_WORDS = {
    "horaire": "0 * * * *",
    "hourly": "0 * * * *",
    "quotidienne": "0 0 * * *",
    "quotidien": "0 0 * * *",
    "journaliere": "0 0 * * *",
    "daily": "0 0 * * *",
    "hebdomadaire": "0 0 * * 1",
    "weekly": "0 0 * * 1",
    "mensuelle": "0 0 1 * *",
    "mensuel": "0 0 1 * *",
    "monthly": "0 0 1 * *",
}
CRITICALITY_WORDS = {
    "low": "low",
    "faible": "low",
    "basse": "low",
    "bas": "low",
    "high": "high",
    "haute": "high",
    "haut": "high",
    "elevee": "high",
    "critique": "high",
}


def _field(metadata: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    """The first of ``names`` given a value in ``metadata``, keys compared as :func:`_plain` words (``fréquence``,
    ``FREQUENCE``, ``Fréquence `` and a decomposed ``é`` are all ``Fréquence``)."""
    wanted = [_plain(name) for name in names]
    found = {_plain(str(key)): value for key, value in metadata.items() if value not in (None, "")}
    return next((found[name] for name in wanted if name in found), None)


def _plain(text: str) -> str:
    from sluice.project.objets_json import plain_word  # objets_json reads its records with this module

    return plain_word(text)


def frequency_cron(value: Any) -> str | None:
    """The cron expression a ``Fréquence`` value stands for, or None when it is neither a cron nor a known word."""
    if not isinstance(value, str):
        return None
    word = FREQUENCY_WORDS.get(_plain(value))
    if word is not None:
        return word
    text = " ".join(value.split())
    return text if check_cron(text) is None else None


def criticality(
    object_id: int, metadata: Mapping[str, Any], file: str, line: int | None, problems: list[ConfigError]
) -> str | None:
    """The object's ``Criticité`` as ``low`` / ``high`` (None when absent); an unknown value is a problem."""
    value = _field(metadata, CRITICALITY_FIELDS)
    if value is None:
        return None
    found = CRITICALITY_WORDS.get(_plain(value)) if isinstance(value, str) else None
    if found is None:
        problems.append(ConfigError(f"object {object_id}: unknown Criticité {value!r}; use low or high", file, line))
    return found


def frequency_schedules(objects: Mapping[int, ObjectSpec], problems: list[ConfigError]) -> tuple[ScheduleSpec, ...]:
    """One schedule per distinct ``Fréquence`` of ``objects`` (their metadata), targeting the objects that carry it.

    A value that is neither a cron expression nor a known word is a problem at the object's record: a frequency
    schedules the object, so a typo would otherwise leave it unscheduled without a word.
    """
    groups: dict[str, list[int]] = {}
    words = ", ".join(sorted({word.capitalize() for word in FREQUENCY_WORDS}))
    for oid, obj in sorted(objects.items()):
        value = _field(obj.metadata, FREQUENCY_FIELDS)
        if value is None:
            continue
        cron = frequency_cron(value)
        if cron is not None:
            groups.setdefault(cron, []).append(oid)
            continue
        text = " ".join(str(value).split())
        why = check_cron(text) if len(text.split()) in (5, 6) else None
        what = why or f"{value!r} is neither a cron expression (e.g. '0 * * * *') nor one of {words}"
        problems.append(
            ConfigError(
                f"object {oid} ({obj.name}): Fréquence: {what}; fix it, or remove it to leave the object unscheduled",
                obj.origin.file,
                obj.origin.line,
            )
        )
    specs = []
    for cron, ids in groups.items():
        first = objects[ids[0]].origin
        specs.append(ScheduleSpec(name=f"objets:{cron}", cron=cron, targets=tuple(ids), file=first.file, line=first.line))
    return tuple(specs)
