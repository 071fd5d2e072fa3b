"""Standard output whose reader went away: writes are dropped, and its descriptor points at /dev/null."""

from __future__ import annotations

import os

from sluice.cli.output import ClosedSafe


def test_writes_after_the_reader_went_away_are_dropped() -> None:
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w", buffering=1)
    try:
        safe = ClosedSafe(stream)
        assert safe.write("first\n") == 6
        assert os.read(read_end, 100) == b"first\n"
        os.close(read_end)  # `| head -1` has its line
        assert safe.write("second\n") == 7 and safe.reader_gone
        assert safe.write("third\n") == 6
        safe.flush()
        assert os.path.samefile(f"/proc/self/fd/{stream.fileno()}", os.devnull), "what is flushed at exit goes nowhere"
        assert safe.fileno() == stream.fileno() and safe.isatty() is False
    finally:
        stream.close()
