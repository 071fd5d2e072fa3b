"""Whether a project's definition files changed since the last look: what the scheduler re-reads to take back the
schedules it set apart (docs/schedules.md, "A broken schedule").

A file's signature is its modification time, size and a hash of its content (xxh3_128): an edit, a ``touch`` or a
rewrite keeping size and time (``cp -p``) all count as a change; a missing file is a signature too (``None``).

>>> watch = ProjectWatch([Path("sluice.yaml")])  # doctest: +SKIP
>>> watch.changed()                              # doctest: +SKIP
False
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import xxhash

Signature = tuple[int, int, str] | None


def signature(path: Path) -> Signature:
    """``(mtime_ns, size, content hash)`` of ``path``, None when it cannot be read."""
    try:
        stat = path.stat()
        content = path.read_bytes()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, xxhash.xxh3_128_hexdigest(content)


class ProjectWatch:
    """The signatures of ``files`` as last seen; :meth:`changed` says whether any differs now (and remembers it)."""

    def __init__(self, files: Iterable[Path]) -> None:
        self.files = list(dict.fromkeys(files))
        self._seen = {path: signature(path) for path in self.files}

    def watch(self, path: Path) -> None:
        """Look at ``path`` too (from now on: its present signature is the one seen)."""
        if path not in self._seen:
            self.files.append(path)
            self._seen[path] = signature(path)

    def changed(self) -> bool:
        """True when a file's signature differs from the last look's."""
        now = {path: signature(path) for path in self.files}
        changed = now != self._seen
        self._seen = now
        return changed
