from __future__ import annotations

import json
from pathlib import Path

import pytest

from sluice.errors import ConfigError
from sluice.graph.plan import fingerprint, make_plan
from sluice.project.load import load_project
from sluice.project.model import Project
from sluice.state.base import LatestOutput

SEED = Path(__file__).parents[2] / "examples" / "seed-002" / "Objets.json"


def diamond(tmp_path: Path) -> Project:
    records = [
        {"IdObjet": 1001, "IdObjet_Parent": None},
        {"IdObjet": 1002, "IdObjet_Parent": None},
        {"IdObjet": 1003, "IdObjet_Parent": None},
        {"IdObjet": 2001, "IdObjet_Parent": [1001, 1002]},
        {"IdObjet": 2002, "IdObjet_Parent": 1001},
        {"IdObjet": 3001, "IdObjet_Parent": [2001, 2002]},
        {"IdObjet": 3002, "IdObjet_Parent": 2002},
    ]
    path = tmp_path / "Objets.json"
    path.write_text(json.dumps(records))
    return load_project(path)


def test_default_targets_are_final_objects_and_ancestors_once(tmp_path: Path) -> None:
    plan = make_plan(diamond(tmp_path))
    assert plan.targets == [3001, 3002]
    assert sorted(plan.order) == [1001, 1002, 2001, 2002, 3001, 3002]
    assert len(plan.order) == len(set(plan.order))
    assert 1003 not in plan.order


def test_target_subset(tmp_path: Path) -> None:
    plan = make_plan(diamond(tmp_path), [3002])
    assert plan.order == [1001, 2002, 3002]


def test_order_is_topological(tmp_path: Path) -> None:
    project = diamond(tmp_path)
    plan = make_plan(project)
    position = {oid: i for i, oid in enumerate(plan.order)}
    for oid in plan.order:
        for parent in project.objects[oid].parents:
            assert position[parent] < position[oid]


def test_unknown_target(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown target object id"):
        make_plan(diamond(tmp_path), [4242])


def test_fresh_objects_are_skipped_unless_forced(tmp_path: Path) -> None:
    project = diamond(tmp_path)
    latest: dict[int, LatestOutput] = {}
    hashes: dict[int, str] = {}
    for oid in make_plan(project).order:
        obj = project.objects[oid]
        fp = fingerprint(obj.definition_hash(), "", [hashes[p] for p in obj.parents])
        hashes[oid] = fp
        latest[oid] = LatestOutput(oid, fp, fp, None, 0, "r0", 0.0)
    plan = make_plan(project, latest=latest, input_fingerprint=lambda obj: "")
    assert set(plan.fresh) == set(plan.order)
    assert plan.to_run == []
    forced = make_plan(project, latest=latest, force=True, input_fingerprint=lambda obj: "")
    assert forced.fresh == {}
    # a changed input of 1001 makes it and everything downstream of it run
    changed = make_plan(project, latest=latest, input_fingerprint=lambda obj: "new" if obj.id == 1001 else "")
    assert set(changed.to_run) == {1001, 2001, 2002, 3001, 3002}
    assert set(changed.fresh) == {1002}


def test_unknown_input_is_never_fresh(tmp_path: Path) -> None:
    project = diamond(tmp_path)
    latest = {oid: LatestOutput(oid, "x", "x", None, 0, "r0", 0.0) for oid in project.objects}
    plan = make_plan(project, latest=latest, input_fingerprint=lambda obj: None)
    assert plan.fresh == {}


def test_seed_example_plans() -> None:
    project = load_project(SEED)
    plan = make_plan(project)
    assert plan.targets == [3001, 3002, 3003, 3004, 3005, 3006]
    assert 2005 in plan.order
    assert 1002 not in plan.order  # no final object needs it
