"""docs/reference/ is generated from the plugins' option structures and kept up to date."""

from __future__ import annotations

from pathlib import Path

from sluice.plugins.reference import REGENERATE, reference_pages

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "docs" / "reference"


def test_committed_reference_is_up_to_date() -> None:
    pages = reference_pages()
    stale = [name for name, text in pages.items() if not (REFERENCE / name).is_file() or (REFERENCE / name).read_text() != text]
    extra = sorted(path.name for path in REFERENCE.glob("*.md") if path.name not in pages)
    assert not stale and not extra, f"docs/reference is out of date ({stale or extra}); regenerate it with: {REGENERATE}"


def test_one_page_per_kind_with_plugins() -> None:
    pages = reference_pages()
    assert set(pages) == {
        "source.md",
        "destination.md",
        "lake.md",
        "engine.md",
        "bus.md",
        "state.md",
        "capture.md",
        "apply.md",
        "check.md",
        "project.md",
        "README.md",
    }
    assert '| `delimiter` | str (length 1) | `","` | Field separator. |' in pages["source.md"]
    assert "pip install 'sluice[postgres]'" in pages["destination.md"]
    assert "## retry" in pages["project.md"]
