"""``stages:`` of sluice.yaml (:mod:`sluice.project.yaml_stages`): id ranges neither reversed nor overlapping."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_yaml_file import problems_in


@pytest.mark.parametrize(
    ("stages", "problem"),
    [
        ("  standardize: {ids: 1500-2999}\n", ":2: stage 'standardize': ids 1500-2999 overlap stage 'ingest' (1000-1999)"),
        ("  standardize: {ids: 2999-2000}\n", ":2: stage 'standardize': ids 2999-2000 are reversed; write low-high"),
        ("  a: {ids: 1-99}\n  b: {ids: 50+}\n", ":3: stage 'b': ids 50+ overlap stage 'a' (1-99)"),
    ],
)
def test_stage_id_ranges_must_not_overlap_or_be_reversed(tmp_path: Path, stages: str, problem: str) -> None:
    found = problems_in(tmp_path, "stages:\n" + stages + "objects: [{id: 1, stage: a}]\n")
    assert any(p.startswith(problem) for p in found), found
