"""Options several commands share, defined once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

workers_option: Callable[[F], F] = click.option(
    "--workers",
    type=click.Choice(["in-process", "external"]),
    default="in-process",
    show_default=True,
    help="external: leave the work to 'sluice worker' processes.",
)
"""``--workers in-process|external`` of ``sluice run`` and ``sluice backfill``."""


def log_options(func: F) -> F:
    """``--log-level`` (default warning) and ``--log-format``: the options of a command run in a terminal."""
    return _log_options(func, "warning")


def service_log_options(func: F) -> F:
    """The same for a long-running service (``serve``, ``worker``): default level info, so that its request
    and object lines reach the log collector (docs/monitoring.md) unless told otherwise."""
    return _log_options(func, "info")


def _log_options(func: F, level: str) -> F:
    func = click.option(
        "--log-level", default=level, type=click.Choice(["debug", "info", "warning", "error"]), show_default=True
    )(func)
    func = click.option(
        "--log-format",
        default="text",
        type=click.Choice(["text", "json"]),
        show_default=True,
        help="json: one JSON object per line.",
    )(func)
    return func
