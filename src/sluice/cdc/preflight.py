"""Checks of a sync against the live databases, before anything starts (``sluice validate``, ``sluice sync``).

What the file alone cannot tell: a ``tables:`` entry that matches no table, a table without a primary key
under ``no_key: refuse``, a source not set up for capture (:meth:`Capture.check`: binlog format, wal_level,
privileges...). Each problem is a :class:`~sluice.errors.ConfigError` at the sync's line naming what to change.
"""

from __future__ import annotations

from sluice.cdc.runtime import CaptureFactory, plugin_capture
from sluice.cdc.tables import default_target_namespace, resolve_tables
from sluice.errors import ConfigError, SluiceError
from sluice.project.model import SyncSpec


class Unreachable(SluiceError):
    """A database of the sync could not be reached, so the live checks did not run."""


def live_problems(spec: SyncSpec, capture_factory: CaptureFactory = plugin_capture) -> list[ConfigError]:
    """Every live problem of ``spec``. Raises :class:`Unreachable` when a database cannot be reached."""
    from sluice.cdc.runtime import plugin_options

    settings = spec.settings
    file, line = spec.origin.file, spec.origin.line
    sides = [settings.source] + ([settings.target] if settings.direction == "both" else [])
    problems: list[ConfigError] = []
    for side in sides:
        url = spec.urls[side]
        raw = dict(settings.capture) if side == settings.source else {}
        try:
            options = plugin_options("capture", url, raw, f"sync '{settings.name}': capture")
            capture = capture_factory(url, options, settings.name, side, None)
        except ConfigError:
            raise
        except Exception as exc:
            raise Unreachable(f"sync '{settings.name}': cannot reach {side}: {exc}") from exc
        try:
            problems += [ConfigError(f"sync '{settings.name}': {side}: {p}", file, line) for p in capture.check()]
            if side == settings.source:
                namespace = settings.target_namespace or default_target_namespace(spec.urls[settings.target])
                _, found = resolve_tables(settings, capture.list_tables(), namespace)
                problems += [ConfigError(p, file, spec.origin.line_of("tables")) for p in found]
        except SluiceError as exc:
            problems.append(ConfigError(str(exc), file, line))
        finally:
            capture.close()
    return problems
