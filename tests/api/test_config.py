"""The ``api:`` section in ``sluice.yaml``: every mistake reported at its own line, cross-references
checked from the file, and ``sluice validate --live`` checking tables against the databases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from api_support import DDL, execute_all

from sluice.api.config_live import live_check
from sluice.api.security import build_gate, settings_problems
from sluice.api.settings import ApiSettings
from sluice.errors import ConfigError
from sluice.project.load import parse_project

GOOD = """\
connections:
  hr: sqlite:///hr.db
  files: duckdb:///x.duckdb
api:
  sources:
    - connection: hr
      tables: [employes, dept]
  operations:
    employes: {list: employes, by_pk: employe_par_id}
  roles:
    reader:
      employes:
        select: {columns: [id, nom], limit: 10}
"""


def problems_of(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "sluice.yaml").write_text(text)
    _, problems = parse_project(str(tmp_path))
    return [f"{p.line}: {p.message}" for p in problems]


def test_a_good_section_loads(tmp_path: Path) -> None:
    (tmp_path / "sluice.yaml").write_text(GOOD)
    project, problems = parse_project(str(tmp_path))
    assert problems == []
    assert project is not None and project.api is not None
    assert project.api.settings.roles["reader"]["employes"].select is not None
    assert project.api.origin.line == 4
    assert dict(project.api.urls) == {"hr": "sqlite:///hr.db"}


def test_mistakes_at_every_depth_are_reported_at_their_line(tmp_path: Path) -> None:
    text = GOOD.replace("select: {columns: [id, nom], limit: 10}", "select: {colums: [id], limit: 0}").replace(
        "tables: [employes, dept]", "tables: [employes, dept]\n      readonly: true"
    )
    found = problems_of(tmp_path, text)
    assert any(f.startswith("8: ") and "unknown key 'readonly'" in f and "read_only" in f for f in found), found
    assert any(f.startswith("14: ") and "unknown key 'colums'" in f for f in found), found
    assert any(f.startswith("14: ") and "limit" in f for f in found), found


def test_cross_references_from_the_file(tmp_path: Path) -> None:
    text = GOOD.replace("- connection: hr", "- connection: hrr").replace(
        "employes: {list: employes, by_pk: employe_par_id}", "salaires: {list: 'bad name', by_pk: employes}"
    )
    text += "  mutations: {employes: files}\n  graphql_path: /runs\n"
    found = problems_of(tmp_path, text)
    assert any(f.startswith("6: ") and "unknown connection 'hrr'" in f and "Did you mean 'hr'" in f for f in found), found
    assert any("'salaires' is not among the sources' tables" in f for f in found), found
    assert any("is not a GraphQL name" in f for f in found), found
    assert any("connection 'files' is duckdb://" in f for f in found), found
    assert any("graphql_path '/runs'" in f for f in found), found


def test_live_problems_name_patterns_that_match_nothing(tmp_path: Path) -> None:
    execute_all(f"sqlite:///{tmp_path / 'hr.db'}", DDL)
    (tmp_path / "sluice.yaml").write_text(GOOD.replace("[employes, dept]", "[employes, nothing_*]"))
    project, problems = parse_project(str(tmp_path))
    assert problems == [] and project is not None and project.api is not None
    spec = project.api
    found, notes = live_check(spec.settings, spec.urls, project.root, spec.origin)
    assert [(p.line, p.message) for p in found] == [(7, "api: tables: 'nothing_*' matches no table or view of 'hr'")]
    assert notes == []


def test_validate_live_points_at_the_api_entry_at_fault_and_notes_an_exclude_that_leaves_nothing_out(
    tmp_path: Path,
) -> None:
    """A ``tables:`` item that matches nothing and a ``mutations:`` table that is not there, each at its own line
    (they were at the ``api:`` line); an ``exclude:`` item that leaves nothing out, a note at its line."""
    execute_all(f"sqlite:///{tmp_path / 'hr.db'}", DDL)
    execute_all(f"sqlite:///{tmp_path / 'w.db'}", ["CREATE TABLE dept (id INTEGER PRIMARY KEY)"])
    lines = [
        "connections:",  # 1
        "  hr: sqlite:///hr.db",
        "  w: sqlite:///w.db",
        "api:",
        "  sources:",  # 5
        "    - connection: hr",
        "      tables:",
        "        - employes",
        "        - nothing_*",  # 9: matches nothing
        "        - dept",
        "      exclude: [employes_actifs, journal]",  # 11: each leaves nothing out
        "  mutations:",
        "    dept: w",
        "    employes: w",  # 14: w has no employes
    ]
    (tmp_path / "sluice.yaml").write_text("\n".join(lines) + "\n")
    command = [sys.executable, "-m", "sluice", "validate", str(tmp_path), "--live"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    where = str(tmp_path / "sluice.yaml")
    assert done.returncode == 2, done.stdout + done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("  - ")] == [
        f"  - {where}:9: api: tables: 'nothing_*' matches no table or view of 'hr'",
        f"  - {where}:14: api: mutations: 'w' has no table 'employes' to write",
    ], done.stderr
    (tmp_path / "sluice.yaml").write_text("\n".join(lines[:8] + lines[9:11]) + "\n")  # without line 9 and mutations:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line for line in done.stdout.splitlines() if line.startswith("note: ")] == [
        f"note: {where}:10: api: exclude: '{name}' matches no table or view that tables: selects in 'hr', so it leaves "
        "nothing out; fix the name or pattern, or remove it"
        for name in ("employes_actifs", "journal")
    ], done.stdout


def test_sync_mutations_are_checked_against_syncs_roles_and_names(tmp_path: Path) -> None:
    text = GOOD.replace("connections:\n", "connections:\n  my: mysql://u@127.0.0.1/hr\n  pg: postgresql://u@127.0.0.1/w\n", 1)
    text += (
        "  sync_mutations:\n"
        "    sync_employes: {sync: employes, roles: [reader]}\n"
        "    employe_par_id: {sync: nope, roles: [readr]}\n"
        "syncs:\n"
        "  - {name: employes, source: my, target: pg, tables: [employes]}\n"
    )
    found = problems_of(tmp_path, text)
    assert not any("sync_employes" in f for f in found), found
    assert any(f.startswith("18: ") and "employe_par_id' is already operations.employes.by_pk" in f for f in found), found
    assert any("no sync named 'nope' in syncs: (employes)" in f for f in found), found
    assert any("unknown role 'readr'" in f and "reader" in f for f in found), found
    assert len(found) == 3, found
    bad = text.replace("{sync: employes, roles: [reader]}", "{sync: employes, roles: [], timeout_s: 0}")
    found = problems_of(tmp_path, bad)
    assert any(f.startswith("17: ") and "timeout_s" in f for f in found), found


def test_validate_runs_the_security_checks_serve_runs_at_start(tmp_path: Path) -> None:
    """A short HS256 secret, a rate that does not parse and a missing persisted-query file: each reported at
    its line by validate, and the same settings refused by the gate ``sluice serve`` builds."""
    text = GOOD + (
        "  auth:\n"
        "    jwt: {algorithms: [HS256], secret: short}\n"
        "  limits:\n"
        "    rate: {per_key: lots}\n"
        "    graphql: {persisted_queries_file: nosuch.json}\n"
    )
    found = problems_of(tmp_path, text)
    assert any(f.startswith("15: ") and "needs a secret of at least 32 bytes" in f for f in found), found
    assert any(f.startswith("17: ") and "'lots' is not a rate limit" in f for f in found), found
    assert any(f.startswith("18: ") and "cannot read" in f and "nosuch.json" in f for f in found), found
    assert len(found) == 3, found
    (tmp_path / "sluice.yaml").write_text(GOOD)
    project, _ = parse_project(str(tmp_path))
    assert project is not None and project.api is not None
    plain = msgspec.to_builtins(project.api.settings)
    plain["auth"]["jwt"] = {"algorithms": ["HS256"], "secret": "short"}
    bad = msgspec.convert(plain, ApiSettings)
    assert [p.message.split(" needs")[0] for p in settings_problems(bad, tmp_path)] == ["api.auth.jwt.secret: HS256"]
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        build_gate(bad, tmp_path, f"sqlite:///{tmp_path / 'state.db'}")


def test_live_reports_permission_columns_the_tables_lack(tmp_path: Path) -> None:
    execute_all(f"sqlite:///{tmp_path / 'hr.db'}", DDL)
    text = GOOD.replace(
        "select: {columns: [id, nom], limit: 10}", "select:\n          columns: [id, nocol]\n          filter: {nomm: {_eq: 1}}"
    )
    (tmp_path / "sluice.yaml").write_text(text)
    project, problems = parse_project(str(tmp_path))
    assert problems == [] and project is not None and project.api is not None
    spec = project.api
    found, _ = live_check(spec.settings, spec.urls, project.root, spec.origin)
    assert [(p.line, p.message) for p in found] == [
        (14, "api: roles.reader: role 'reader' select on 'employes': columns names 'nocol', which is not a column of employes."),
        (
            15,
            "api: roles.reader: role 'reader' select on 'employes': filter names 'nomm', which is not a column of employes. "
            "Did you mean 'nom'?",
        ),
    ]
    assert all(p.source == spec.origin.file for p in found)


def test_an_anon_role_no_role_defines_and_unknown_filter_operators_are_reported(tmp_path: Path) -> None:
    text = (
        GOOD.replace(
            "        select: {columns: [id, nom], limit: 10}\n",
            "        select:\n"
            "          filter: {_or: [{nom: {_equals: Ana}}, {dept: {id: {_in: [1], _lesser: 3}}}], actif: {_eq: true}}\n",
        )
        + "  auth: {anon_role: readr}\n"
    )
    found = problems_of(tmp_path, text)
    assert (
        "14: api: roles.reader.employes.select.filter: unknown operator '_equals' (operators: _eq, _neq, _gt, _gte, _lt, "
        "_lte, _in, _nin, _like, _ilike, _is_null, and _and, _or, _not). Did you mean '_eq'?" in found
    ), found
    assert any(p.startswith("14: ") and "unknown operator '_lesser'" in p for p in found), found
    assert any(p.startswith("15: api: auth: anon_role 'readr' is not a role of roles:") and "'reader'" in p for p in found)
    assert len(found) == 3, found
