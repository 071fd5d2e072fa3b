"""project/yaml_tree.py: libyaml and the pure-Python parser give the same tree, lines included; errors keep their words."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from sluice.errors import ConfigError
from sluice.project import yaml_tree
from sluice.project.model import Origin
from sluice.project.yaml_tree import YamlMap, load_yaml, path_lines

DOCUMENT = """\
name: demo
defaults: &defaults
  retries: 2
  mode: append
objects:
  - id: 1
    <<: *defaults
    sql: select 1 as x
  - id: 2
    parents: [1]
    id: 3
    options: {a: 1, b: [x, y]}
"""


def _shape(node: Any) -> Any:
    """The tree with each mapping's line, key lines, duplicate keys and list items' lines beside its items."""
    if isinstance(node, YamlMap):
        items = {key: _shape(value) for key, value in node.items()}
        return ("map", node.line, dict(node.key_lines), list(node.duplicates), dict(node.item_lines), items)
    if isinstance(node, list):
        return [_shape(item) for item in node]
    return node


def test_libyaml_and_python_parsers_give_the_same_tree_and_lines() -> None:
    fast = yaml.load(DOCUMENT, Loader=yaml_tree._FastLineLoader)
    slow = yaml.load(DOCUMENT, Loader=yaml_tree._LineLoader)
    assert _shape(fast) == _shape(slow)
    second = fast["objects"][1]
    assert second.duplicates == [("id", 11)]
    assert second.key_lines["options"] == 12
    assert fast["objects"][0]["retries"] == 2  # the merge key
    assert fast.item_lines == {"objects": (6, 9)}


SYNC = """\
syncs:
  - name: s
    tables:
      - emp
      - "dept_*"
    exclude: [a, b]
    columns:
      emp: {drop: [ssn], mask: [email]}
"""


def test_path_lines_give_the_line_of_each_key_and_list_item_and_origin_falls_back_to_the_nearest() -> None:
    sync = load_yaml(SYNC, "f.yaml")["syncs"][0]
    lines = path_lines(sync)
    assert lines[("tables",)] == 3 and lines[("tables", 0)] == 4 and lines[("tables", 1)] == 5
    assert lines[("exclude", 1)] == 6 and lines[("columns", "emp", "mask", 0)] == 8
    origin = Origin("f.yaml", sync.line, tuple(sync.key_lines.items()), tuple(lines.items()))
    assert origin.line_at("tables", 1) == 5 and origin.line_at("columns", "emp", "drop", 0) == 8
    assert origin.line_at("tables", 7) == 3  # no such item: its key's line
    assert origin.line_at("rename", "x") == 2  # no such key: the definition's line
    assert Origin("f.yaml", 2, (("tables", 3),)).line_at("tables", 1) == 3  # no paths kept: the key's line


def test_uses_libyaml_when_pyyaml_has_it() -> None:
    if not yaml.__with_libyaml__:
        pytest.fail("PyYAML was built without libyaml here: project files parse about 4x slower")
    assert issubclass(yaml_tree._FastLineLoader, yaml.CSafeLoader)


def test_a_syntax_error_keeps_the_pure_python_words_and_line() -> None:
    with pytest.raises(ConfigError) as caught:
        load_yaml("name: demo\nobjects:\n\t- id: 1\n", "sluice.yaml")
    assert "a tab character cannot indent" in str(caught.value)
    assert caught.value.line == 3


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("name: y\nobjects:\n  - id: 1001\n    name: a\n    sql: {{ ds }}\n", 5),  # the likely mistake
        ("name: y\nobjects:\n  - {id: 1001, name: a, ? [x]: 1}\n", 3),
    ],
)
def test_a_mapping_or_list_as_a_key_is_one_line_naming_the_quote_to_add(text: str, line: int) -> None:
    """A new user's trial: an unquoted ``sql: {{ ds }}`` crashed every command with ``TypeError: unhashable type``."""
    with pytest.raises(ConfigError) as caught:
        load_yaml(text, "sluice.yaml")
    assert caught.value.line == line
    assert "quote the value" in str(caught.value) and "\n" not in str(caught.value)


OVERRIDES = """\
base: &base {cron: "0 * * * *", targets: [1]}
schedules:
  s2: {<<: *base, cron: "5 * * * *"}
  s3:
    <<: *base
    cron: "7 * * * *"
    cron: "9 * * * *"
"""


def test_a_key_given_after_a_merge_overrides_the_merged_one_and_only_a_key_given_twice_is_a_duplicate() -> None:
    """YAML's merge key (https://yaml.org/type/merge.html): keys given in the mapping override those merged in. A
    validation once reported `key 'cron' is given twice` for the override."""
    for tree in (yaml_tree.load_yaml(OVERRIDES, "f.yaml"), yaml.load(OVERRIDES, Loader=yaml_tree._LineLoader)):
        s2, s3 = tree["schedules"]["s2"], tree["schedules"]["s3"]
        assert s2 == {"cron": "5 * * * *", "targets": [1]} and s2.duplicates == []
        assert s3["cron"] == "9 * * * *" and s3.duplicates == [("cron", 7)]  # given twice by hand: still reported
