"""Several streaming objects run side by side, one thread each: what ``sluice stream`` and ``sluice serve`` host.

>>> host = StreamHost(project, lake, [1001])       # doctest: +SKIP
>>> host.start(); ...; host.stop(); host.join()     # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from sluice.errors import SluiceError
from sluice.lake.base import Lake
from sluice.project.model import Project
from sluice.streaming.loop import MicroBatcher, streaming_objects
from sluice.streaming.spark_stream import SparkStreamer, stream_runner
from sluice.streaming.status import StreamStatus

log = logging.getLogger(__name__)


class StreamHost:
    """The streaming objects ``object_ids`` of ``project`` (None: all of them), each in a thread of its own.

    Raises ConfigError (from :func:`streaming_objects`) for an id that is not a streaming object, and the
    loops' set-up errors (a source connection that is not Kafka) before any thread starts.
    """

    def __init__(
        self, project: Project, lake: Lake, object_ids: Sequence[int] | None = None, *, available_now: bool = False
    ) -> None:
        objects = streaming_objects(project) if not object_ids else [streaming_objects(project, i)[0] for i in object_ids]
        self.loops = [stream_runner(project, obj, lake) for obj in objects]
        for loop in self.loops:
            loop.available_now = available_now
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for loop in self.loops:
            thread = threading.Thread(target=self._run, args=(loop,), name=f"stream-{loop.obj.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self, loop: MicroBatcher | SparkStreamer) -> None:
        try:
            loop.run()
        except SluiceError as exc:  # a user's mistake or a server that is gone: one line, no traceback
            log.error("streaming object %s (%s) stopped: %s", loop.obj.id, loop.obj.name, exc)
        except Exception:
            log.exception("streaming object %s (%s) stopped on an error", loop.obj.id, loop.obj.name)

    def stop(self) -> None:
        """Ask every loop to commit what it has gathered and end (returns at once; see :meth:`join`)."""
        for loop in self.loops:
            loop.stop()

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the loops to end (at most ``timeout_s`` seconds in all); True when they all did."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not self.running()

    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    @property
    def statuses(self) -> list[StreamStatus]:
        return [loop.status for loop in self.loops]

    def snapshot(self) -> list[dict[str, Any]]:
        """``GET /streams``: one entry per hosted object (see :meth:`StreamStatus.snapshot`)."""
        return [status.snapshot() for status in self.statuses]
