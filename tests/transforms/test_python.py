from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest

from helpers import rewrite_keeping_size_and_mtime
from sluice.errors import TerminalError
from sluice.transforms.python import input_fingerprint, project_modules, run_python

USERS = pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"]})
ORDERS = pa.table({"user_id": [1, 1, 3], "amount": [2.0, 3.0, 4.0]})


def module(root: Path, relative: str, source: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def test_function_gets_parents_as_keyword_tables(tmp_path: Path) -> None:
    module(
        tmp_path,
        "steps_basic.py",
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        def totals(users, orders):
            sums = orders.group_by("user_id").aggregate([("amount", "sum")])
            return users.join(sums, keys="id", right_keys="user_id", join_type="inner").sort_by("id")
        """,
    )
    table = run_python("steps_basic:totals", tmp_path, {"users": USERS, "orders": ORDERS}, object_label="obj")
    assert table.to_pylist() == [{"id": 1, "name": "a", "amount_sum": 5.0}, {"id": 3, "name": "c", "amount_sum": 4.0}]


def test_dotted_module_in_a_package(tmp_path: Path) -> None:
    module(tmp_path, "pkg_dotted/__init__.py", "")
    module(tmp_path, "pkg_dotted/scoring.py", "def first(**tables):\n    return tables['users'].slice(0, 1)\n")
    assert run_python("pkg_dotted.scoring:first", tmp_path, {"users": USERS}, object_label="obj").num_rows == 1


def test_other_tabular_results_are_converted(tmp_path: Path) -> None:
    module(
        tmp_path,
        "steps_results.py",
        """
        import pyarrow as pa

        def rows(users):
            return [{"id": 1, "tag": "x"}, {"id": 2}]

        def reader(users):
            return pa.RecordBatchReader.from_batches(users.schema, users.to_batches())

        def batch(users):
            return users.to_batches()[0]

        def nothing(users):
            return []
        """,
    )

    def run(name: str) -> pa.Table:
        return run_python(f"steps_results:{name}", tmp_path, {"users": USERS}, object_label="obj")

    assert run("rows").to_pylist() == [{"id": 1, "tag": "x"}, {"id": 2, "tag": None}]
    assert run("reader").equals(USERS)
    assert run("batch").equals(USERS)
    assert run("nothing").num_rows == 0


def test_wrong_return_type_is_terminal(tmp_path: Path) -> None:
    module(tmp_path, "steps_wrong.py", "def bad(users):\n    return 42\n")
    with pytest.raises(TerminalError, match=r"obj: steps_wrong:bad returned int; return a pyarrow.Table"):
        run_python("steps_wrong:bad", tmp_path, {"users": USERS}, object_label="obj")


def test_exceptions_inside_the_function_propagate_unchanged(tmp_path: Path) -> None:
    module(tmp_path, "steps_raise.py", "def boom(users):\n    raise ValueError('upstream changed')\n")
    with pytest.raises(ValueError, match=r"upstream changed"):
        run_python("steps_raise:boom", tmp_path, {"users": USERS}, object_label="obj")


def test_missing_module_function_and_bad_reference(tmp_path: Path) -> None:
    module(tmp_path, "steps_named.py", "def score(users):\n    return users\n\ndef _private():\n    pass\n")
    with pytest.raises(TerminalError, match=r"cannot import module 'steps_nowhere': no .*steps_nowhere\.py"):
        run_python("steps_nowhere:f", tmp_path, {}, object_label="obj")
    with pytest.raises(TerminalError, match=r"has no function 'scor'. Did you mean 'score'.*It defines: score$"):
        run_python("steps_named:scor", tmp_path, {"users": USERS}, object_label="obj")
    for ref in ("steps_named", "steps_named:", ":score", "steps-named:score"):
        with pytest.raises(TerminalError, match=r"must look like 'module:function'"):
            run_python(ref, tmp_path, {}, object_label="obj")


def test_import_time_errors_are_terminal(tmp_path: Path) -> None:
    module(tmp_path, "steps_syntax.py", "def broken(:\n    pass\n")
    module(tmp_path, "steps_deps.py", "import not_installed_anywhere\n")
    with pytest.raises(TerminalError, match=r"steps_syntax\.py:1: syntax error in module 'steps_syntax'"):
        run_python("steps_syntax:broken", tmp_path, {}, object_label="obj")
    with pytest.raises(TerminalError, match=r"importing module 'steps_deps' failed: No module named 'not_installed_anywhere'"):
        run_python("steps_deps:f", tmp_path, {}, object_label="obj")


def test_parameters_must_match_the_parents(tmp_path: Path) -> None:
    module(tmp_path, "steps_sig.py", "def only_users(users):\n    return users\n")
    with pytest.raises(TerminalError, match=r"steps_sig:only_users\(users\) cannot be called with the parents \(users, orders\)"):
        run_python("steps_sig:only_users", tmp_path, {"users": USERS, "orders": ORDERS}, object_label="obj")


def test_two_projects_with_the_same_module_name_each_get_their_own(tmp_path: Path) -> None:
    for project, rows in (("one", 1), ("two", 2)):
        module(tmp_path / project, "steps_shared.py", f"def pick(users):\n    return users.slice(0, {rows})\n")
    assert run_python("steps_shared:pick", tmp_path / "one", {"users": USERS}, object_label="obj").num_rows == 1
    assert run_python("steps_shared:pick", tmp_path / "two", {"users": USERS}, object_label="obj").num_rows == 2
    assert run_python("steps_shared:pick", tmp_path / "one", {"users": USERS}, object_label="obj").num_rows == 1


def test_an_edited_module_is_imported_again(tmp_path: Path) -> None:
    path = module(tmp_path, "steps_edit.py", "def pick(users):\n    return users.slice(0, 1)\n")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert run_python("steps_edit:pick", tmp_path, {"users": USERS}, object_label="obj").num_rows == 1
    module(tmp_path, "steps_edit.py", "def pick(users):\n    return users.slice(0, 2)\n")
    os.utime(path, ns=(2_000_000_000, 2_000_000_000))
    assert run_python("steps_edit:pick", tmp_path, {"users": USERS}, object_label="obj").num_rows == 2


# --- what counts as the transform's code: input_fingerprint and the worker's module cache ---------------


def fp_project(root: Path) -> None:
    module(root, "fp_pkg/__init__.py", "LIMIT = 1\n")
    module(
        root,
        "fp_pkg/steps.py",
        """
        import json
        import pyarrow as pa
        from . import util
        from fp_pkg.sub import deep

        def pick(users):
            import fp_helpers
            return users.slice(0, fp_helpers.count() + util.ZERO + deep.ZERO)
        """,
    )
    module(root, "fp_pkg/util.py", "from .sub.leaf import ZERO\n")
    module(root, "fp_pkg/sub/__init__.py", "")
    module(root, "fp_pkg/sub/deep.py", "ZERO = 0\n")
    module(root, "fp_pkg/sub/leaf.py", "ZERO = 0\n")
    module(root, "fp_helpers.py", "from fp_more import ONE\n\ndef count():\n    return ONE\n")
    module(root, "fp_more.py", "ONE = 1\n")
    module(root, "fp_unrelated.py", "X = 1\n")
    module(root, "data.csv", "a\n1\n")


def test_project_modules_follow_imports_transitively_and_leave_installed_ones_out(tmp_path: Path) -> None:
    fp_project(tmp_path)
    found = project_modules("fp_pkg.steps", tmp_path)
    assert sorted(found) == [
        "fp_helpers",
        "fp_more",
        "fp_pkg",
        "fp_pkg.steps",
        "fp_pkg.sub",
        "fp_pkg.sub.deep",
        "fp_pkg.sub.leaf",
        "fp_pkg.util",
    ]
    assert found["fp_pkg"][0] == tmp_path / "fp_pkg" / "__init__.py"
    assert found["fp_helpers"][0] == tmp_path / "fp_helpers.py"
    assert project_modules("json", tmp_path) == {}  # installed: not the project's
    assert run_python("fp_pkg.steps:pick", tmp_path, {"users": USERS}, object_label="obj").num_rows == 1
    imported = {
        name
        for name, loaded in list(sys.modules.items())
        if str(getattr(loaded, "__file__", "")).startswith(str(tmp_path.resolve()))
    }
    assert imported == set(found), "the static scan finds what Python actually imported from the project"


def test_relative_imports_beyond_the_top_and_unparsable_files_still_count_their_own_file(tmp_path: Path) -> None:
    module(tmp_path, "fp_top.py", "from . import fp_sibling\nfrom .. import fp_other\n")
    module(tmp_path, "fp_sibling.py", "")
    module(tmp_path, "fp_broken.py", "import fp_sibling\ndef broken(:\n")
    assert sorted(project_modules("fp_top", tmp_path)) == ["fp_top"]
    assert sorted(project_modules("fp_broken", tmp_path)) == ["fp_broken"]


def test_input_fingerprint_changes_with_any_imported_project_module_even_at_the_same_size_and_mtime(tmp_path: Path) -> None:
    fp_project(tmp_path)
    ref = "fp_pkg.steps:pick"
    before = input_fingerprint(ref, tmp_path)
    assert input_fingerprint(ref, tmp_path) == before
    edits = [
        ("fp_pkg/__init__.py", "LIMIT = 1", "LIMIT = 2"),
        ("fp_pkg/steps.py", "users.slice", "Users.slice"),
        ("fp_pkg/util.py", "ZERO", "ZER0"),
        ("fp_pkg/sub/__init__.py", "", ""),
        ("fp_pkg/sub/deep.py", "ZERO = 0", "ZERO = 5"),
        ("fp_pkg/sub/leaf.py", "ZERO = 0", "ZERO = 7"),
        ("fp_helpers.py", "return ONE", "return 1  "),
        ("fp_more.py", "ONE = 1", "ONE = 3"),
    ]
    seen = {before}
    for relative, old, new in edits:
        path = tmp_path / relative
        if old:
            rewrite_keeping_size_and_mtime(path, old, new)
        else:
            path.write_text("# now with a comment\n", encoding="utf-8")
        changed = input_fingerprint(ref, tmp_path)
        assert changed not in seen, f"an edit of {relative} was not noticed"
        seen.add(changed)
    last = input_fingerprint(ref, tmp_path)
    module(tmp_path, "fp_unrelated.py", "X = 2\n")
    module(tmp_path, "data.csv", "a\n2\n")
    (tmp_path / "fp_new_module.py").write_text("Y = 1\n", encoding="utf-8")
    os.utime(tmp_path / "fp_more.py", ns=(5_000_000_000, 5_000_000_000))  # touched, same bytes
    assert input_fingerprint(ref, tmp_path) == last


def test_a_worker_reimports_when_an_imported_project_module_changes(tmp_path: Path) -> None:
    module(tmp_path, "fp_w_pkg/__init__.py", "ROWS = 1\n")
    module(
        tmp_path,
        "fp_w_pkg/steps.py",
        "from fp_w_pkg import ROWS\nfrom fp_w_help import extra\n\n"
        "def pick(users):\n    from fp_w_lazy import LAZY\n    return users.slice(0, ROWS + extra() + LAZY)\n",
    )
    module(tmp_path, "fp_w_help.py", "def extra():\n    return 0\n")
    module(tmp_path, "fp_w_lazy.py", "LAZY = 0\n")

    def rows() -> int:
        return run_python("fp_w_pkg.steps:pick", tmp_path, {"users": USERS}, object_label="obj").num_rows

    assert rows() == 1
    steps, lazy = sys.modules["fp_w_pkg.steps"], sys.modules["fp_w_lazy"]
    os.utime(tmp_path / "fp_w_help.py", ns=(5_000_000_000, 5_000_000_000))
    assert rows() == 1
    assert rows() == 1
    assert sys.modules["fp_w_pkg.steps"] is steps, "same bytes: the cached module is kept"
    assert sys.modules["fp_w_lazy"] is lazy, "a module imported inside the function is kept too"
    rewrite_keeping_size_and_mtime(tmp_path / "fp_w_lazy.py", "LAZY = 0", "LAZY = 1")
    assert rows() == 2
    rewrite_keeping_size_and_mtime(tmp_path / "fp_w_lazy.py", "LAZY = 1", "LAZY = 0")
    rewrite_keeping_size_and_mtime(tmp_path / "fp_w_help.py", "return 0", "return 1")
    assert rows() == 2
    rewrite_keeping_size_and_mtime(tmp_path / "fp_w_pkg/__init__.py", "ROWS = 1", "ROWS = 0")
    assert rows() == 1
