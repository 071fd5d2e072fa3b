"""The ``syncs:`` section of sluice.yaml: read with file and line for every problem."""

from __future__ import annotations

from pathlib import Path

from sluice.project.load import parse_project

HEAD = """\
connections:
  hr: mysql://sluice:sluice@127.0.0.1:23306/hr
  warehouse: postgresql://postgres@127.0.0.1:25432/postgres
  files: sqlite:///x.db
"""


def problems(tmp_path: Path, syncs: str) -> list[tuple[int | None, str]]:
    path = tmp_path / "sluice.yaml"
    path.write_text(HEAD + syncs)
    _, found = parse_project(path)
    return [(p.line, p.message) for p in found]


def test_a_good_sync_reads_into_project_syncs(tmp_path: Path) -> None:
    path = tmp_path / "sluice.yaml"
    path.write_text(
        HEAD
        + """syncs:
  - name: employees
    source: hr
    target: warehouse
    tables: [employes, "hr.dept_*"]
    rename: {employes: staff}
    columns: {employes: {drop: [ssn], mask: [email]}}
    capture: {server_id: 4242}
    apply: {namespace: sluice_sync}
"""
    )
    project, found = parse_project(path)
    assert found == [] and project is not None
    spec = project.sync(None)
    assert spec.settings.name == "employees" and spec.settings.columns["employes"].mask == ["email"]
    assert spec.urls["hr"].startswith("mysql://") and spec.origin.line == 6
    # the plugins' options reach the runtime (they were once checked, then dropped)
    assert spec.settings.capture == {"server_id": 4242} and spec.settings.apply == {"namespace": "sluice_sync"}


def test_every_problem_has_its_line(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """syncs:
  - name: a
    source: hrr
    target: warehouse
    tables: [t]
    snapshott: never
  - name: b
    source: files
    target: warehouse
    tables: [t]
    direction: sideways
  - name: c
    source: hr
    target: warehouse
    tables: [t]
    capture: {server_idd: 1}
  - name: c
    source: hr
    target: warehouse
    tables: [t]
""",
    )
    text = "\n".join(f"{line}: {message}" for line, message in found)
    assert "7: sync 'a': unknown connection 'hrr' in source" in text and "Did you mean 'hr'" in text
    assert "10: sync 'a': unknown key 'snapshott'. Did you mean 'snapshot'?" in text
    assert "12: sync 'b': connection 'files' is sqlite://, which cannot be a capture" in text
    assert "15: sync 'b': " in text and "sideways" in text and "one-way" in text
    assert "20: sync 'c': capture (mysql): unknown option 'server_idd'" in text
    assert "21: sync 'c' is defined twice (also at line 16)" in text


def test_an_option_against_the_direction_is_reported_with_the_sync_s_other_problems(tmp_path: Path) -> None:
    """A wrong value elsewhere in the sync does not hide it until a second validate (a trial needed three rounds)."""
    found = problems(
        tmp_path,
        "syncs:\n  - {name: a, source: hr, target: warehouse, tables: [t], conflicts: newer-wins, snapshot: initialy}\n",
    )
    messages = [message for _, message in found]
    assert any("conflicts: newer-wins applies to direction: both only" in m for m in messages), messages
    assert any("snapshot: invalid enum value 'initialy'" in m for m in messages), messages


def test_a_project_of_syncs_only_needs_no_objects(tmp_path: Path) -> None:
    found = problems(tmp_path, "syncs:\n  - {name: a, source: hr, target: warehouse, tables: [t]}\n")
    assert found == []


def test_options_that_contradict_the_direction_are_refused_at_their_line(tmp_path: Path) -> None:
    """The file alone says it, before any server is asked (a trial found both accepted by plain ``validate``)."""
    found = problems(
        tmp_path,
        """syncs:
  - name: a
    source: hr
    target: warehouse
    tables: [employes, dept]
    direction: both
    columns: {employes: {mask: [email]}, dept: {}}
  - name: b
    source: hr
    target: warehouse
    tables: [t]
    conflicts: source-wins
  - name: c
    source: hr
    target: warehouse
    tables: [t]
    direction: both
    conflicts: target-wins
""",
    )
    assert found == [
        (
            11,
            "sync 'a': columns: drops or masks columns of employes, which a both-ways sync cannot write back; remove "
            "those rules or use direction: one-way",
        ),
        (
            16,
            "sync 'b': conflicts: source-wins applies to direction: both only (a one-way sync has no conflicts); remove it "
            "or set direction: both",
        ),
    ]
