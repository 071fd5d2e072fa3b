"""Whether a process of this host is alive: a zombie (killed, not yet reaped by its parent) is not.

``os.kill(pid, 0)`` succeeds for a zombie: a process killed by ``kill -9`` stays one until its parent (a shell, a
supervisor) reaps it, a second or two here. Leases held by such a process (``state/lease.py``, the embedded bus's
message leases) are taken over at once; so a zombie counts as dead (state ``Z`` or ``X`` in ``/proc/<pid>/stat``,
where there is a ``/proc``).
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def proc_state(pid: int, proc: Path = PROC) -> str:
    """The state letter of process ``pid`` in ``proc`` (``R``, ``S``, ``Z``...), "" when it cannot be read."""
    try:
        stat = (proc / str(pid) / "stat").read_text(errors="replace")
    except OSError:
        return ""
    # "pid (comm) S ...": the command name may hold spaces and parentheses, the state follows the last ")"
    fields = stat.rpartition(")")[2].split()
    return fields[0] if fields else ""


def pid_alive(pid: int, proc: Path = PROC) -> bool:
    """Whether process ``pid`` of this host exists and is not a zombie (another user's live process counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return proc_state(pid, proc) not in ("Z", "X")
