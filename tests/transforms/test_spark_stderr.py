"""A user's ``sluice run`` of Spark objects shows Sluice's output, not Spark's start-up banner and log4j lines;
a failing object still reaches the user as Sluice's error; ``--log-level debug`` gives Spark's own log back."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import sluice_cli, summary_json, write_yaml
from transforms.conftest import SPARK_YAML, require_spark

SPARK_CHATTER = (
    "Using Spark's default log4j profile",
    "Setting default log level",
    "To adjust logging level use sc.setLogLevel",
    "NativeCodeLoader",
    " WARN ",
)
"""What Spark's driver prints on stderr at start-up and at its default WARN level."""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project of one CSV source, one Spark object that works and one that names a column its parent lacks."""
    require_spark()
    folder = tmp_path / "project"
    write_yaml(
        folder,
        SPARK_YAML + "objects:\n  - {id: 1001, name: people, source: {type: csv, path: people.csv}}\n"
        "  - {id: 2001, name: per_country, parents: [1001], engine: spark,"
        " sql: 'select country, count(*) as n from people group by country'}\n"
        "  - {id: 2002, name: broken, parents: [1001], engine: spark, sql: 'select no_such_column from people'}\n",
    )
    (folder / "people.csv").write_text("id,name,country\n1,ada,FR\n2,bob,DE\n3,cy,FR\n", encoding="utf-8")
    return folder


def test_spark_runs_quietly_and_its_errors_are_sluices(project: Path) -> None:
    done = sluice_cli("run", str(project), "--json", timeout_s=300)
    summary = summary_json(done.stdout)
    assert summary["objects"]["2001"]["status"] == "loaded", done.stderr
    assert summary["objects"]["2001"]["rows"] == 2
    assert summary["objects"]["2002"]["status"] == "failed"
    assert "UNRESOLVED_COLUMN" in summary["objects"]["2002"]["error"]  # Spark's error, told by Sluice
    assert [line for line in done.stderr.splitlines() if any(chatter in line for chatter in SPARK_CHATTER)] == []


def test_log_level_debug_gives_sparks_own_log_back(project: Path) -> None:
    done = sluice_cli("run", str(project), "--json", "--target", "2001", "--log-level", "debug", timeout_s=300)
    assert summary_json(done.stdout)["objects"]["2001"]["status"] == "loaded", done.stderr
    assert "Setting default log level" in done.stderr  # Spark's own start-up lines, at its default level
