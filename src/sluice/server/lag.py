"""Samples consumer-group lag into ``sluice_bus_consumer_lag_messages`` every few seconds.

Groups sampled: each stage's workers (``workers.<stage>`` on ``sluice.ready.<stage>``) and the active
run's coordinator (``coordinator.<run_id>`` on ``sluice.events``). A bus that knows partitions may offer
``lag_by_partition(group, topic) -> {partition: lag}``; otherwise the lag is reported as partition 0.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from sluice.bus import names
from sluice.bus.base import Bus
from sluice.observability import metrics

log = logging.getLogger("sluice.server")


class LagSampler:
    """A background thread setting the lag gauge; labels of groups no longer sampled are removed."""

    def __init__(self, bus: Bus, stages: list[str], active_run_id: Callable[[], str | None], interval_s: float = 2.0) -> None:
        self.bus = bus
        self.stages = stages
        self.active_run_id = active_run_id
        self.interval_s = interval_s
        self._labels: set[tuple[str, str, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def sample(self) -> None:
        """Measure every group once."""
        pairs = [(names.work_group(stage), names.ready_topic(stage)) for stage in self.stages]
        run_id = self.active_run_id()
        if run_id:
            pairs.append((names.coordinator_group(run_id), names.EVENTS_TOPIC))
        labels: set[tuple[str, str, str]] = set()
        for group, topic in pairs:
            for partition, lag in self._lags(group, topic).items():
                key = (metrics.group_label(group), topic, str(partition))
                metrics.BUS_CONSUMER_LAG.labels(*key).set(lag)
                labels.add(key)
        for gone in self._labels - labels:
            metrics.BUS_CONSUMER_LAG.remove(*gone)
        self._labels = labels

    def _lags(self, group: str, topic: str) -> Mapping[object, int]:
        by_partition = getattr(self.bus, "lag_by_partition", None)
        if callable(by_partition):
            result: Mapping[object, int] = by_partition(group, topic)
            return result
        return {0: self.bus.lag(group, topic)}

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                self.sample()
                failing = False
            except Exception as exc:
                if not failing:
                    log.warning("cannot sample consumer lag: %s", exc)
                failing = True
            self._stop.wait(self.interval_s)
