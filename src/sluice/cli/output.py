"""Standard output that a closed reader does not break: ``sluice run PATH | head -3`` finishes its run.

When the reader of a pipe goes away (``head`` has its lines), each write to standard output raises
``BrokenPipeError``; raised inside the run's observer it would stop the coordinator and leave the run ``running``.
:func:`guard_stdout` puts :class:`ClosedSafe` in place of ``sys.stdout``: the first broken pipe points the output's
file descriptor at ``/dev/null`` (what Python flushes at exit goes there too) and later writes are dropped, so the
command goes on, the run ends and its status is recorded; what it logs on standard error is unchanged.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO


class ClosedSafe:
    """A text stream writing to ``stream`` until its reader goes away, then nowhere (:attr:`reader_gone`)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return self.stream.write(text)
            except BrokenPipeError:
                self._gone()
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._gone()

    def _gone(self) -> None:
        self.reader_gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self.stream.fileno())
            finally:
                os.close(devnull)
        except (OSError, ValueError):  # no file descriptor (a test's stream): writes are dropped all the same
            pass

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding...: the stream's
        return getattr(self.stream, name)


def guard_stdout() -> ClosedSafe:
    """Put a :class:`ClosedSafe` over ``sys.stdout`` (once) and return it."""
    if not isinstance(sys.stdout, ClosedSafe):
        sys.stdout = ClosedSafe(sys.stdout)
    return sys.stdout
