"""One call run in a daemon thread of its own, its outcome in a standard ``concurrent.futures.Future``.

For a step that can overlap the caller's own work without a pool to keep (reading a lake manifest while a new
version is written and loaded): ``future.result()`` returns the value or raises the call's error in the
caller's thread, ``future.exception()`` waits without raising.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


def in_thread(call: Callable[[], T], name: str) -> Future[T]:
    """Start ``call()`` in a daemon thread named ``name``; return the future of its result."""
    future: Future[T] = Future()
    future.set_running_or_notify_cancel()

    def run() -> None:
        try:
            future.set_result(call())
        except BaseException as exc:  # handed to whoever waits on the future
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future
