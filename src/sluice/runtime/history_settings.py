"""The ``history:`` section of ``sluice.yaml``: how long runs and what goes with them are kept (docs/operations.md).

>>> HistorySettings(keep="30d").keep_s
2592000.0
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from sluice.plugins.base import Settings
from sluice.streaming.durations import EXAMPLES, parse_duration


class HistorySettings(Settings):
    """``history: {keep: 30d, every: 1h}``: runs (with their object states and events), backfills, sensor-fired
    runs... finished more than ``keep`` ago are pruned, and per-date lake outputs written more than ``dated_outputs``
    (default ``keep``) ago, every ``every`` by ``sluice serve`` (and the scheduler), or
    on demand by ``sluice prune``."""

    keep: Annotated[
        str | int | float, Meta(description=f"How long finished runs are kept: {EXAMPLES}, 30d (a unit is required).")
    ] = "30d"
    dated_outputs: Annotated[
        str | int | float | None,
        Meta(
            description="How long per-date lake outputs (<name>.ld-<date>, docs/backfills.md) are kept after their last "
            "write (default: keep; a unit is required, e.g. 7d)."
        ),
    ] = None
    every: Annotated[
        str | int | float, Meta(description="How often a long-running service prunes (default 1h; a bare number is seconds).")
    ] = "1h"

    def __post_init__(self) -> None:
        for key, example in (("keep", "30d"), ("dated_outputs", "7d")):
            value = getattr(self, key)
            if isinstance(value, int | float) and not isinstance(value, bool):  # 7 would mean 7 seconds: prune it all
                raise ValueError(f"{key}: {value!r} has no unit (a bare number would be seconds): give a unit, e.g. {example}")
        if parse_duration(self.keep) <= 0:
            raise ValueError(f"keep: {self.keep!r} must be above 0, e.g. 30d")
        if self.dated_outputs is not None and parse_duration(self.dated_outputs) <= 0:
            raise ValueError(f"dated_outputs: {self.dated_outputs!r} must be above 0, e.g. 7d")
        if parse_duration(self.every) <= 0:
            raise ValueError(f"every: {self.every!r} must be above 0, e.g. 1h")

    @property
    def keep_s(self) -> float:
        """``keep`` in seconds."""
        return parse_duration(self.keep) / 1e6

    @property
    def dated_outputs_s(self) -> float:
        """``dated_outputs`` in seconds (``keep``'s when not set)."""
        return parse_duration(self.dated_outputs) / 1e6 if self.dated_outputs is not None else self.keep_s

    @property
    def every_s(self) -> float:
        """``every`` in seconds."""
        return parse_duration(self.every) / 1e6
