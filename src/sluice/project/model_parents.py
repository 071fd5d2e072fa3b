"""The checks on what a model reads that depend on where it runs (docs/models.md, "Engines").

A ``warehouse`` model reads tables of its own database: objects with a destination on its connection,
other warehouse models on it, declared sources. A lake model (``duckdb``, ``spark``) reads lake outputs:
objects keeping one and lake models; a DuckDB ``view`` model stores nothing and is inlined where read,
so its readers get its parents too (:meth:`ParentChecks._views`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sluice.project.model import ConnectionSpec, ObjectSpec
from sluice.project.model_spec import ModelSpec
from sluice.project.model_sql import ParsedModel

LAKE_ENGINES_NOTE = "a lake engine (duckdb, spark) reads objects with a lake output and models of a lake engine"


@dataclass
class ModelFile:
    """A model file being read: its name, path, rendered SQL, merged configuration, id, stage and bound tables."""

    name: str
    path: Path
    rel: str
    parsed: ParsedModel
    config: dict[str, Any]
    id: int = 0
    stage: str = ""
    spec: ModelSpec | None = None
    parents: dict[str, int] | None = None


class ParentChecks:
    """Mixed into :class:`sluice.project.models.ModelsReader`: each check records problems and returns
    whether the model may run."""

    objects: Mapping[int, ObjectSpec]
    connections: Mapping[str, ConnectionSpec]

    def problem(self, message: str, file: str | None = None, line: int | None = None) -> None:
        """Record a problem (the reader's)."""
        raise NotImplementedError

    def _warehouse_parents(self, model: ModelFile, by_name: dict[str, ModelFile], connection: str) -> bool:
        ok = True
        for ref in model.parsed.tables:
            parent_id = (model.parents or {}).get(ref.text)
            if parent_id is None:
                continue
            other = next((m for m in by_name.values() if m.id == parent_id), None)
            if other is not None:
                fine = other.config.get("engine") == "warehouse" and self._same(other.config.get("connection"), connection)
                what = f"model {other.name}, which does not run in the warehouse on connection '{connection}'"
            else:
                obj = self.objects[parent_id]
                dest = obj.destination
                fine = dest is not None and dest.connection == connection
                what = f"object {obj.id} ({obj.name}), which has no destination on connection '{connection}'"
            if not fine:
                self.problem(
                    f"model {model.name}: runs in the warehouse but reads '{ref.text}', {what}; give it one, "
                    "or run this model with engine duckdb",
                    str(model.path),
                    ref.line,
                )
                ok = False
        return ok

    def _same(self, name: Any, connection: str) -> bool:
        postgres = [n for n, c in self.connections.items() if c.scheme == "postgresql"]
        return (str(name) if name is not None else (postgres[0] if len(postgres) == 1 else None)) == connection

    def _lake_parents(self, model: ModelFile, by_name: dict[str, ModelFile], sources: dict[str, str]) -> bool:
        ok = True
        for ref_text in sources:
            line = next(r.line for r in model.parsed.tables if r.text == ref_text)
            self.problem(
                f"model {model.name}: reads source '{ref_text}', a warehouse table; {LAKE_ENGINES_NOTE}, or use engine warehouse",
                str(model.path),
                line,
            )
            ok = False
        for ref in model.parsed.tables:
            parent_id = (model.parents or {}).get(ref.text)
            if parent_id is None:
                continue
            other = next((m for m in by_name.values() if m.id == parent_id), None)
            obj = self.objects.get(parent_id)
            if other is not None and other.config.get("engine") == "warehouse":
                why = f"model {other.name} runs in the warehouse and writes nothing to the lake"
            elif obj is not None and (not obj.lake or obj.kind == "noop"):
                why = f"object {obj.id} ({obj.name}) keeps no lake output"
            else:
                continue
            self.problem(f"model {model.name}: reads '{ref.text}', but {why}; {LAKE_ENGINES_NOTE}", str(model.path), ref.line)
            ok = False
        return ok

    def _views(self, model: ModelFile, by_name: dict[str, ModelFile], seen: frozenset[int] = frozenset()) -> list[int]:
        """The DuckDB view models ``model`` reads, directly or through other views, in dependency order."""
        order: list[int] = []
        for parent_id in (model.parents or {}).values():
            other = next((m for m in by_name.values() if m.id == parent_id), None)
            if other is None or other.config.get("materialized") != "view" or other.id in seen:
                continue
            for view in [*self._views(other, by_name, seen | {model.id}), other.id]:
                if view not in order:
                    order.append(view)
        return order

    def _view_parents(self, model: ModelFile, by_name: dict[str, ModelFile]) -> list[int]:
        """The parents of the view models ``model`` inlines: their data must reach this model too."""
        ids: list[int] = []
        for view_id in self._views(model, by_name):
            view = next(m for m in by_name.values() if m.id == view_id)
            ids += list((view.parents or {}).values())
        return ids
