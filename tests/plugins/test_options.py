"""Typed options: every problem of a mapping, each at its own line, before anything runs."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from msgspec import Meta

from sluice.plugins.base import Settings
from sluice.plugins.options import convert_options, field_names, literal_choices


class Example(Settings):
    path: str
    block_size: Annotated[int, Meta(ge=1024)] = 4096
    mode: Literal["append", "replace"] = "append"
    key: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode == "replace" and self.key:
            raise ValueError("replace takes no key")


LINES = {"path": 3, "blok_size": 4, "block_size": 5, "mode": 6, "key": 7}


def problems(raw: dict[str, object], **kwargs: object) -> list[str]:
    value, found = convert_options(Example, raw, label="object 1001: source", file="p.yaml", line=2, key_lines=LINES, **kwargs)  # type: ignore[arg-type]
    assert (value is None) == bool(found)
    return [str(problem) for problem in found]


def test_a_valid_mapping_becomes_the_typed_structure() -> None:
    value, found = convert_options(Example, {"path": "x.csv", "block_size": 2048}, label="l", file=None)
    assert found == []
    assert value == Example(path="x.csv", block_size=2048)


def test_every_problem_is_reported_at_its_own_line() -> None:
    found = problems({"blok_size": 2048, "block_size": 10, "mode": "upsert"})
    assert found == [
        "p.yaml:4: object 1001: source: unknown option 'blok_size'. Did you mean 'block_size'? "
        "Known options: path, block_size, mode, key",
        "p.yaml:5: object 1001: source: block_size: expected int >= 1024, got 10",
        "p.yaml:6: object 1001: source: mode: invalid enum value 'upsert'. Choose one of: append, replace",
        "p.yaml:2: object 1001: source: missing required option 'path'",
    ]


def test_nested_type_errors_name_the_position() -> None:
    assert problems({"path": "x", "key": ["a", 2]}) == ["p.yaml:7: object 1001: source: key[1]: expected str, got int"]


def test_cross_field_checks_run_once_each_field_is_right() -> None:
    assert problems({"path": "x", "mode": "replace", "key": ["id"]}) == ["p.yaml:2: object 1001: source: replace takes no key"]


def test_url_query_strings_convert_numbers_when_not_strict() -> None:
    value, found = convert_options(Example, {"path": "x", "block_size": "2048"}, label="l", file=None, strict=False)
    assert found == [] and value is not None and value.block_size == 2048
    assert problems({"path": "x", "block_size": "2048"}) == ["p.yaml:5: object 1001: source: block_size: expected int, got str"]


def test_ignored_keys_are_left_to_the_caller() -> None:
    assert problems({"path": "x", "type": "csv"}, ignore=("type",)) == []


@pytest.mark.parametrize(
    ("annotation", "choices"),
    [
        (Literal["a", "b"], ["a", "b"]),
        (Annotated[Literal["x"], Meta(description="d")], ["x"]),
        (Literal["y"] | None, ["y"]),
        (int, []),
    ],
)
def test_literal_choices(annotation: object, choices: list[str]) -> None:
    assert literal_choices(annotation) == choices


def test_field_names_keep_the_declaration_order() -> None:
    assert field_names(Example) == ["path", "block_size", "mode", "key"]


class Offset(Settings, tag_field="style", tag="offset"):
    limit: int = 100


class Cursor(Settings, tag_field="style", tag="cursor"):
    field: str = "next"


class Partitioning(Settings):
    interval: Literal["day", "month", "year"] = "month"


class Nested(Settings):
    paginate: Offset | Cursor | None = None
    partitions: tuple[Partitioning, ...] = ()


def test_a_wrong_tag_of_a_nested_union_lists_the_tags_and_the_nearest() -> None:
    _, problems = convert_options(Nested, {"paginate": {"style": "offst"}}, label="source", file="f.yaml", line=3)
    assert [str(p) for p in problems] == [
        "f.yaml:3: source: paginate.style: invalid value 'offst'. Did you mean 'offset'? Choose one of: offset, cursor"
    ]


def test_a_wrong_nested_literal_lists_its_values() -> None:
    _, problems = convert_options(Nested, {"partitions": [{"interval": "weekly"}]}, label="source", file="f.yaml", line=3)
    assert str(problems[0]).endswith("partitions[0].interval: invalid enum value 'weekly'. Choose one of: day, month, year")


def test_a_nested_type_error_without_a_fixed_set_has_no_choices() -> None:
    _, problems = convert_options(Nested, {"paginate": {"style": "offset", "limit": "x"}}, label="s", file="f.yaml", line=3)
    assert "Choose one of" not in str(problems[0])


def test_a_yaml_boolean_where_a_string_belongs_says_to_quote_it() -> None:
    """A new user's trial: ``name: off`` became False and the message did not say why."""
    _, problems = convert_options(Example, {"path": False}, label="object 1", file="f.yaml", line=3)
    assert "got bool (YAML reads unquoted yes, no, on, off, true and false as booleans: quote the value" in str(problems[0])


class OwnChecks(Settings):
    """Options whose checks of one key each are in ``__post_init__`` (as a Kafka source's ``schema``)."""

    name: str
    size: Annotated[int, Meta(ge=1)] = 1
    unit: str = "s"
    label: str = "x"

    def __post_init__(self) -> None:
        if self.unit not in ("s", "ms"):
            raise ValueError(f"unit: {self.unit!r} is not a unit: write s or ms")
        if not self.label.isidentifier():
            raise ValueError(f"label: {self.label!r} is not a name")


def test_with_a_placeholder_each_keys_own_checks_are_reported_beside_the_others() -> None:
    raw = {"size": 0, "unit": "h", "label": "a b", "colour": 1}
    lines = {"size": 3, "unit": 4, "label": 5, "colour": 6}
    kwargs = {"label": "o", "file": "p.yaml", "line": 2, "key_lines": lines}
    _, layered = convert_options(OwnChecks, raw, **kwargs)  # type: ignore[arg-type]
    assert [str(p) for p in layered] == [
        "p.yaml:3: o: size: expected int >= 1, got 0",
        "p.yaml:6: o: unknown option 'colour'. Known options: name, size, unit, label",
        "p.yaml:2: o: missing required option 'name'",
    ]
    value, found = convert_options(OwnChecks, raw, placeholder={"name": "n"}, **kwargs)  # type: ignore[arg-type]
    assert value is None
    assert [str(p) for p in found] == [
        *[str(p) for p in layered],
        "p.yaml:4: o: unit: 'h' is not a unit: write s or ms",
        "p.yaml:5: o: label: 'a b' is not a name",
    ]
    ok, none = convert_options(OwnChecks, {"name": "n", "unit": "ms"}, placeholder={"name": "n"}, **kwargs)  # type: ignore[arg-type]
    assert ok == OwnChecks(name="n", unit="ms") and none == []
