"""Fixtures of the server tests: the seed project and a live server over it with instant simulated objects."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from live_server import INSTANT, LiveServer

from helpers import load, seed_project
from sluice.project.model import Project


@pytest.fixture
def seed(tmp_path: Path) -> Project:
    return load(seed_project(tmp_path))


@pytest.fixture
def server(seed: Project) -> Iterator[LiveServer]:
    with LiveServer(seed, INSTANT) as live:
        yield live
