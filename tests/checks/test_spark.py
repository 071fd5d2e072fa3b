"""Every check type on Spark (an ``engine: spark`` object's lake output, the worker's session), warn and error:
one module, one Spark session (``transforms/conftest.py``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from checks.test_run import FAILING, PASSING, finished, project
from sluice.checks.run import CheckRunner
from sluice.lake.registry import open_lake
from sluice.runtime.run import RunOptions, run_project
from transforms.conftest import SPARK_YAML, spark  # noqa: F401


def test_every_check_type_runs_on_spark_with_warn_and_error(tmp_path: Path, spark: Any) -> None:  # noqa: F811
    proj = project(tmp_path, "warn", None, head=SPARK_YAML, engine="spark")
    summary = run_project(proj, RunOptions())
    assert summary.status == "succeeded" and summary.objects[3001].status == "loaded"
    results = finished(proj, summary.run_id)
    for name, (_, failing) in FAILING.items():
        assert (results[name].status, results[name].failing_rows) == ("failed", failing), (name, results[name])
    assert results["unique_user_id"].sample == ["user_id=2, occurrences=2"]
    assert results["relationships_country"].sample == ["country=XX"]
    passing = ("not_null_user_id", "unique_user_id_email", "enough_rows")
    assert all(results[name].status == "passed" for name in passing)

    users = proj.objects[2002]
    as_errors = dataclasses.replace(users, checks=tuple(dataclasses.replace(c, severity="error") for c in users.checks))
    checked = CheckRunner(proj, open_lake(proj)).run(as_errors, "by-hand", store=False)
    assert {r.check: r.failing_rows for r in checked.results if r.status == "failed"} == {n: f for n, (_, f) in FAILING.items()}
    assert checked.failure.startswith("object 2002 (users): check not_null_email (not_null, error): failed, 1 failing row")
    assert not any(f"check {name} " in checked.failure for name in passing) and len(passing) == len(PASSING)
