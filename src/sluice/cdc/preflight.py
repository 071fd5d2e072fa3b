"""Checks of a sync against its live databases (``sluice validate --live``).

What the file alone cannot tell: a ``tables:`` entry that matches no table, a table without a primary key
under ``no_key: refuse``, a ``rename:`` or ``columns:`` rule naming no table or column, a source not set up for
capture (:meth:`Capture.check`: binlog format, wal_level, privileges...). Each problem is a
:class:`~sluice.errors.ConfigError` naming what to change, at the line of the entry at fault (the ``tables:`` entry
that matches nothing, or that selects the table at fault, a pattern's included; the ``rename:`` key, the
``columns:`` item), or at the sync's line for a server's problem.
"""

from __future__ import annotations

from sluice.cdc.runtime import CaptureFactory, plugin_capture
from sluice.cdc.tables import capture_problems
from sluice.errors import ConfigError, SluiceError
from sluice.project.model import SyncSpec


def live_problems(spec: SyncSpec, capture_factory: CaptureFactory = plugin_capture) -> list[ConfigError]:
    """Every live problem of ``spec``, a database that cannot be reached included, in the order of their lines."""
    from sluice.cdc.runtime import plugin_options

    settings = spec.settings
    file, line = spec.origin.file, spec.origin.line
    sides = [settings.source] + ([settings.target] if settings.direction == "both" else [])
    problems: list[ConfigError] = []
    for side in sides:
        url = spec.urls[side]
        raw = dict(settings.capture) if side == settings.source else {}
        options = plugin_options("capture", url, raw, f"sync '{settings.name}': capture")
        try:
            capture = capture_factory(url, options, settings.name, side, None)
        except SluiceError as exc:
            problems.append(ConfigError(f"sync '{settings.name}': cannot reach {side}: {exc}", file, line))
            continue
        try:
            server, tables, _, _ = capture_problems(settings, spec.urls, side, capture)
            problems += [ConfigError(p, file, line) for p in server]
            problems += [ConfigError(p.message, file, spec.origin.line_at(*p.at)) for p in tables]
        except SluiceError as exc:
            problems.append(ConfigError(str(exc), file, line))
        finally:
            capture.close()
    return sorted(problems, key=lambda p: p.line or 0)
