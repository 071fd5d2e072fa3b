"""What sluice plugins shows: option types as a person reads them, defaults and docs from the schema."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from sluice.plugins.base import Plugin, Settings
from sluice.plugins.describe import describe, describe_all, render_text, struct_options


class Demo(Settings):
    """A demo."""

    path: Annotated[str, Meta(min_length=1, description="Where.")]
    workers: Annotated[int, Meta(ge=1, description="How many.")] = 2
    columns: Annotated[list[str] | None, Meta(description="Which.")] = None
    mode: Annotated[Literal["append", "replace", "merge"], Meta(description="How.")] = "append"
    ratio: Annotated[float, Meta(gt=0, le=1, description="How much.")] = 0.5
    tags: Annotated[dict[str, int], Meta(description="Extra.")] = {}  # noqa: RUF012


def test_types_defaults_and_docs() -> None:
    name, doc, options = struct_options(Demo)
    assert (name, doc) == ("Demo", "A demo.")
    rows = {o.name: (o.type, o.default_text, o.doc) for o in options}
    assert rows == {
        "path": ("str (length >= 1)", "required", "Where."),
        "workers": ("int >= 1", "2", "How many."),
        "columns": ("list[str] | null", "null", "Which."),
        "mode": ("one of: append, merge, replace", '"append"', "How."),
        "ratio": ("float > 0 <= 1", "0.5", "How much."),
        "tags": ("dict[str, int]", "{}", "Extra."),
    }


def test_describe_reports_extra_and_missing_driver() -> None:
    plugin = Plugin("source", "demo", Demo, "nowhere:Demo", "A demo source.", extra="demo", modules=("no_such_driver_xyz",))
    info = describe(plugin)
    assert not info.installed and info.missing == ("no_such_driver_xyz",)
    assert info.as_json()["options"][0] == {
        "name": "path",
        "type": "str (length >= 1)",
        "required": True,
        "default": None,
        "doc": "Where.",
    }
    text = render_text([info])
    assert text.splitlines()[0] == "source demo  A demo source."
    assert "extra: demo (not installed: pip install 'sluice[demo]')" in text


def test_describe_all_by_kind() -> None:
    assert [info.name for info in describe_all("bus")] == ["embedded", "kafka"]
    assert {info.kind for info in describe_all()} >= {"source", "destination", "lake", "engine", "bus", "state"}
