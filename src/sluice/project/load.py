"""Find and load a project from a folder, a ``sluice.yaml`` or an ``Objets.json``.

>>> from sluice.project.load import load_project
>>> project = load_project("examples/seed-002")          # doctest: +SKIP
>>> len(project.objects)                                 # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

from sluice.errors import ConfigError, ValidationFailed
from sluice.project.model import Project
from sluice.project.objets_json import read_objets_json
from sluice.project.validate import ahead_of_run, validate_project
from sluice.project.yaml_file import read_yaml_project

PROJECT_FILES = ("sluice.yaml", "sluice.yml", "Objets.json")


def find_definition(path: str | os.PathLike[str]) -> Path:
    """The definition file for ``path``: the file itself, or the first of PROJECT_FILES in the folder."""
    target = Path(path)
    if target.is_dir():
        for name in PROJECT_FILES:
            candidate = target / name
            if candidate.is_file():
                return candidate
        raise ConfigError(f"no {', '.join(PROJECT_FILES)} in this folder; create one or pass the file itself", str(target))
    if not target.exists():
        raise ConfigError("no such file or folder; pass a project folder, a sluice.yaml or an Objets.json", str(target))
    return target


def parse_project(path: str | os.PathLike[str], *, ahead: bool = False) -> tuple[Project | None, list[ConfigError]]:
    """Parse without raising for definition problems: returns the project (if shape-valid) and all problems.

    ``ahead`` also reports what would fail only when an object runs (``sluice validate``): SQL errors and
    unknown tables, missing source files (:func:`~sluice.project.validate.ahead_of_run`).
    """
    definition = find_definition(path)
    if definition.suffix.lower() == ".json":
        project, problems = read_objets_json(definition)
    elif definition.suffix.lower() in (".yaml", ".yml"):
        project, problems = read_yaml_project(definition)
    else:
        raise ConfigError("unknown project file type; use a sluice.yaml or an Objets.json", str(definition))
    if project is not None:
        problems = problems + validate_project(project) + (ahead_of_run(project) if ahead else [])
    return project, sorted(problems, key=lambda p: (p.source or "", p.line or 0))


def load_project(path: str | os.PathLike[str]) -> Project:
    """Load and validate a project; raise :class:`ValidationFailed` listing every problem."""
    project, problems = parse_project(path)
    if problems or project is None:
        raise ValidationFailed(problems)
    return project
