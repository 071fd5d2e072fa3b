"""Checks of a sync against its live databases (``sluice validate --live``).

What the file alone cannot tell: a ``tables:`` entry that matches no table, a table without a primary key
under ``no_key: refuse``, a ``rename:`` or ``columns:`` rule naming no table or column, a source not set up for
capture (:meth:`Capture.check`: binlog format, wal_level, privileges...). Each problem is a
:class:`~sluice.errors.ConfigError` naming what to change, at the line of the entry at fault (the ``tables:`` entry
that matches nothing, or that selects the table at fault, a pattern's included; the ``rename:`` key, the
``columns:`` item), or at the sync's line for a server's problem. An ``exclude:`` entry that leaves nothing out
is a note at its line, not a problem.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from sluice.cdc.base import SyncError
from sluice.cdc.runtime import CaptureFactory, plugin_capture
from sluice.cdc.tables import TableProblem, capture_problems, located
from sluice.errors import ConfigError, SluiceError
from sluice.project.model import SyncSpec


class LiveCheck(NamedTuple):
    """What :func:`live_check` found, each in the order of its lines."""

    problems: list[ConfigError]
    notes: list[ConfigError]


def live_problems(spec: SyncSpec, capture_factory: CaptureFactory = plugin_capture) -> list[ConfigError]:
    """Every live problem of ``spec``, a database that cannot be reached included, in the order of their lines."""
    return live_check(spec, capture_factory).problems


def live_checks(specs: Iterable[SyncSpec]) -> LiveCheck:
    """:func:`live_check` of each of ``specs``, their problems and their notes together."""
    problems: list[ConfigError] = []
    notes: list[ConfigError] = []
    for spec in specs:
        found = live_check(spec)
        problems += found.problems
        notes += found.notes
    return LiveCheck(problems, notes)


def live_check(spec: SyncSpec, capture_factory: CaptureFactory = plugin_capture) -> LiveCheck:
    """Every live problem of ``spec`` (:func:`live_problems`) and every note (an ``exclude:`` entry that leaves
    nothing out)."""
    from sluice.cdc.runtime import plugin_options

    settings = spec.settings
    file, line = spec.origin.file, spec.origin.line
    sides = [settings.source] + ([settings.target] if settings.direction == "both" else [])
    problems: list[ConfigError] = []
    notes: list[TableProblem] = []
    for side in sides:
        # A server's own problem is at the sync's line; one reaching it, at the key naming its connection.
        at = spec.origin.line_at("source" if side == settings.source else "target")
        url = spec.urls[side]
        raw = dict(settings.capture) if side == settings.source else {}
        options = plugin_options("capture", url, raw, f"sync '{settings.name}': capture")
        try:
            capture = capture_factory(url, options, settings.name, side, None)
        except SluiceError as exc:
            problems.append(ConfigError(f"sync '{settings.name}': cannot reach {side}: {exc}", file, at))
            continue
        try:
            found = capture_problems(settings, spec.urls, side, capture)
            problems += located(found.problems, spec.origin)
            notes += found.notes
        except SluiceError as exc:
            unreached = isinstance(exc, SyncError) and exc.transient  # the server did not answer, or refused the login
            text = f"sync '{settings.name}': {exc}" if unreached and not str(exc).startswith("sync ") else str(exc)
            problems.append(ConfigError(text, file, at if unreached else line))
        finally:
            capture.close()
    return LiveCheck(sorted(problems, key=lambda p: p.line or 0), located(notes, spec.origin))
