"""An Objets.json's Fréquence (cron) becomes one schedule per frequency; Criticité becomes the object's criticality."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sluice.project.load import load_project, parse_project
from sluice.project.objets_schedules import frequency_cron

RECORDS: list[dict[str, Any]] = [
    {"IdObjet": 1001, "NomObjet": "Orders", "IdObjet_Parent": None, "Zone": "1-Raw", "EtatObjet": "Actif",
     "Fréquence": "0 * * * *", "Criticité": "high"},
    {"IdObjet": 1002, "NomObjet": "Customers", "IdObjet_Parent": None, "Zone": "1-Raw", "EtatObjet": "Actif",
     "Fréquence": "0 2 * * *", "Criticité": "low"},
    {"IdObjet": 2001, "NomObjet": "Orders", "IdObjet_Parent": "1001", "Zone": "2-Standardized", "EtatObjet": "Actif",
     "Fréquence": "0  *  * * *", "Criticité": "High"},
    {"IdObjet": 2002, "NomObjet": "Customers", "IdObjet_Parent": "1002", "Zone": "2-Standardized", "EtatObjet": "Actif",
     "Fréquence": "Quotidienne"},
    {"IdObjet": 3001, "NomObjet": "Sales", "IdObjet_Parent": "2001;2002", "Zone": "3-Application", "EtatObjet": "Actif",
     "Fréquence": "0 2 * * *", "Criticité": "faible"},
    {"IdObjet": 3002, "NomObjet": "Old", "IdObjet_Parent": "2001", "Zone": "3-Application", "EtatObjet": "Inactif",
     "Fréquence": "0 2 * * *"},
    {"IdObjet": 3003, "NomObjet": "Odd", "IdObjet_Parent": "2001", "Zone": "3-Application", "EtatObjet": "Actif",
     "Fréquence": ""},
]  # fmt: skip


def write(folder: Path, records: list[dict[str, Any]] = RECORDS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "Objets.json"
    path.write_text(json.dumps(records, indent=1, ensure_ascii=False), encoding="utf-8")
    return path


def test_one_schedule_per_frequency_targets_the_objects_that_carry_it(tmp_path: Path) -> None:
    project = load_project(write(tmp_path))
    schedules = {s.name: (s.cron, s.targets, s.timezone, s.catch_up) for s in project.schedules}
    assert schedules == {
        "objets:0 * * * *": ("0 * * * *", (1001, 2001), "UTC", "latest"),
        "objets:0 2 * * *": ("0 2 * * *", (1002, 3001), "UTC", "latest"),  # 3002 is inactive: left out
        "objets:0 0 * * *": ("0 0 * * *", (2002,), "UTC", "latest"),  # Quotidienne
    }
    assert not project.notes  # 3003's empty Fréquence: not scheduled, and nothing to say


def test_an_unknown_frequence_is_a_problem_at_its_record_naming_the_object_and_value(tmp_path: Path) -> None:
    records = [
        {"IdObjet": 1001, "NomObjet": "Orders", "IdObjet_Parent": None, "Fréquence": "souvent"},
        {"IdObjet": 1002, "NomObjet": "Customers", "IdObjet_Parent": None, "Fréquence": "0 25 * * *"},
        {"IdObjet": 1003, "NomObjet": "Sales", "IdObjet_Parent": None, "Fréquence": "Horaire"},
    ]
    _, problems = parse_project(write(tmp_path, records))
    words = "Daily, Hebdomadaire, Horaire, Hourly, Journaliere, Mensuel, Mensuelle, Monthly, Quotidien, Quotidienne, Weekly"
    assert [(p.line, p.message) for p in problems] == [
        (2, f"object 1001 (Orders): Fréquence: 'souvent' is neither a cron expression (e.g. '0 * * * *') nor one of "
            f"{words}; fix it, or remove it to leave the object unscheduled"),
        (8, "object 1002 (Customers): Fréquence: '0 25 * * *' is not a cron expression ([0 25 * * *] "
            "is not acceptable, out of range); e.g. '0 2 * * *'; fix it, or remove it to leave the object unscheduled"),
    ]  # fmt: skip
    (tmp_path / "sluice.yaml").write_text("name: shop\nobjets: {file: Objets.json}\n", encoding="utf-8")
    _, through_yaml = parse_project(tmp_path / "sluice.yaml")
    assert [p.line for p in through_yaml] == [2, 8]  # once each, not again for the sluice.yaml's schedules


def test_criticite_becomes_the_objects_criticality(tmp_path: Path) -> None:
    project = load_project(write(tmp_path))
    assert {oid: obj.criticality for oid, obj in project.objects.items()} == {
        1001: "high",
        1002: "low",
        2001: "high",
        2002: None,
        3001: "low",
        3003: None,
    }


def test_an_unknown_criticite_is_a_problem_at_its_record(tmp_path: Path) -> None:
    records = [{"IdObjet": 1001, "IdObjet_Parent": None, "Criticité": "urgent"}]
    _, problems = parse_project(write(tmp_path, records))
    assert [(p.line, p.message) for p in problems] == [(2, "object 1001: unknown Criticité 'urgent'; use low or high")]


def test_with_a_sluice_yaml_the_schedules_and_criticality_come_along(tmp_path: Path) -> None:
    write(tmp_path)
    (tmp_path / "sluice.yaml").write_text(
        "name: shop\n"
        "objets: {file: Objets.json}\n"
        "objects:\n"
        "  - {id: 2001, criticality: low, tags: [orders]}\n"
        "schedules:\n"
        "  orders: {cron: '30 * * * *', tags: [orders], timezone: Europe/Paris}\n",
        encoding="utf-8",
    )
    project = load_project(tmp_path / "sluice.yaml")
    names = sorted(s.name for s in project.schedules)
    assert names == ["objets:0 * * * *", "objets:0 0 * * *", "objets:0 2 * * *", "orders"]
    assert project.objects[2001].criticality == "low"  # sluice.yaml wins
    assert project.objects[1001].criticality == "high"
    assert next(s for s in project.schedules if s.name == "orders").targets == (2001,)


def test_frequency_words_and_crons() -> None:
    assert frequency_cron("Horaire") == "0 * * * *"
    assert frequency_cron(" Hebdomadaire ") == "0 0 * * 1"
    assert frequency_cron("*/5  *  * * *") == "*/5 * * * *"
    assert frequency_cron(5) is None


def test_the_frequence_key_is_found_whatever_its_case_accents_or_spaces(tmp_path: Path) -> None:
    """A new user's trial: ``fréquence``, ``FREQUENCE``, ``Fréquence `` and a decomposed é left objects unscheduled."""
    keys = ["fréquence", "FREQUENCE", "Fréquence ", "Fre\u0301quence"]
    records = [{"IdObjet": 1001 + i, "NomObjet": f"O{i}", "IdObjet_Parent": None, key: "0 3 * * *"} for i, key in enumerate(keys)]
    project = load_project(write(tmp_path, records))
    assert {s.name: s.targets for s in project.schedules} == {"objets:0 3 * * *": (1001, 1002, 1003, 1004)}
    bad = [{"IdObjet": 1001, "NomObjet": "O", "IdObjet_Parent": None, "FREQUENCE": "0 * * * x"}]
    _, problems = parse_project(write(tmp_path, bad))
    assert [p.line for p in problems] == [2] and "Fréquence" in problems[0].message
