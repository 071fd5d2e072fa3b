"""Opening a project's bus and state store for a command that only reads (``sluice schedules``, ``runs``, ``plan``...).

A project that never ran has no ``.sluice/`` folder: its default SQLite bus and state store do not exist yet. Opening
them as a run does would create the folder and both files, so merely looking at a project would leave files in it.
Here a SQLite file that does not exist is replaced by an empty one in a temporary folder, removed when the command
is done: the command reads "nothing yet" and the project folder is left as it was. Any other store (PostgreSQL,
Kafka) and an existing file are opened as usual.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from sluice.project.model import Project
from sluice.state.base import StateStore
from sluice.urls import connection_scheme, database_file


def unwritten(url: str, root: Path | None, stack: ExitStack) -> str:
    """``url``, or for a SQLite file that does not exist, the URL of one in a temporary folder that ``stack`` removes
    (the query string kept)."""
    if connection_scheme(url) != "sqlite":
        return url
    file = database_file(url, root)
    if file is None or file.exists():
        return url
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sluice-read-")))
    query = url.partition("?")[2]
    return f"sqlite:///{folder / file.name}" + (f"?{query}" if query else "")


@contextmanager
def reading_state(project: Project, state_url: str | None = None) -> Iterator[StateStore]:
    """The project's state store (or ``state_url``'s) for reading only: nothing is created in the project folder."""
    from sluice.state.registry import open_state

    with ExitStack() as stack:
        state = open_state(unwritten(state_url or project.resolve_state_url(), project.root, stack), project.root)
        stack.callback(state.close)
        yield state
