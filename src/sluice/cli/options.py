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
