"""The alert-channel seam: a :class:`Channel` sends one :class:`~sluice.alerts.model.Alert` somewhere.

A channel plugin (kind ``alert``) targets a :class:`Channel` subclass built from its checked options.
:meth:`Channel.send` raises :class:`DeliveryError`, ``transient`` when trying again later may work (a
connection refused, a time-out, HTTP 429 or 5xx); :meth:`Channel.deliver` retries those a few times with a
doubling back-off.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from sluice.alerts.model import Alert, ChannelSpec
from sluice.errors import SluiceError
from sluice.plugins import registry

log = logging.getLogger("sluice.alerts")

BACKOFF_S = 0.5
"""Seconds before the second attempt of a delivery; doubled at each further attempt."""


class DeliveryError(SluiceError):
    """An alert could not be delivered; ``transient`` when another attempt may succeed."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class Channel(ABC):
    """Where alerts go. ``name`` is the channel's key in ``alerts.channels``; ``options`` its plugin's options."""

    def __init__(self, name: str, options: Any) -> None:
        self.name = name
        self.options = options

    @abstractmethod
    def send(self, alert: Alert) -> None:
        """Deliver ``alert`` once. Raises DeliveryError (``transient``: worth another try)."""

    def deliver(self, alert: Alert, sleep: Callable[[float], None] = time.sleep) -> None:
        """:meth:`send` with up to ``options.attempts`` attempts for transient failures; the last error is raised."""
        attempts = int(getattr(self.options, "attempts", 1))
        for attempt in range(1, attempts + 1):
            try:
                self.send(alert)
                return
            except DeliveryError as exc:
                if not exc.transient or attempt == attempts:
                    raise
                log.info("alert channel %s: attempt %d failed (%s); trying again", self.name, attempt, exc)
                sleep(BACKOFF_S * 2 ** (attempt - 1))


def open_channel(spec: ChannelSpec) -> Channel:
    """The channel ``spec`` describes, its plugin loaded now. Raises PluginError / MissingExtra."""
    factory = registry().get("alert", spec.type).load()
    channel: Channel = factory(spec.name, spec.options)
    return channel
