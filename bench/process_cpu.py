"""CPU time of processes during a time window, from Linux's per-thread scheduler statistics.

``bench/kafka.py`` uses it to say where a run's CPU goes (coordinator, workers, broker): a run of its burst lasts
about 0.2 s on two cores, so whole-process CPU times (which include start-up and planning) say nothing about it.

:class:`CpuSampler` reads, every ``interval_s``, the CPU time of each group of processes (the sum over all
their threads of the first field of ``/proc/<pid>/task/<tid>/schedstat``: nanoseconds on a CPU; see the kernel's
``Documentation/scheduler/sched-stats.rst``). :meth:`CpuSampler.between` then gives each group's CPU seconds
between two wall-clock times (epoch seconds), from the samples nearest inside them. Elsewhere than Linux, or for a
process that is gone, a group counts 0.
"""

from __future__ import annotations

import glob
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["CpuSampler", "listening_pid"]


def cpu_ns(pid: int) -> int:
    """Nanoseconds ``pid``'s threads have spent on a CPU (0 when it is gone or there is no /proc)."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            total += int(Path(path).read_text().split()[0])
        except (OSError, ValueError, IndexError):  # a thread that ended between the listing and the read
            continue
    return total


def listening_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` (IPv4 or IPv6), found through /proc (readable by root), or None."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(fields[9])
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for fd_dir in glob.glob("/proc/[0-9]*/fd"):
        try:
            for fd in Path(fd_dir).iterdir():
                if str(fd.readlink()) in wanted:
                    return int(re.findall(r"\d+", fd_dir)[0])
        except OSError:
            continue
    return None


class CpuSampler:
    """Samples the CPU time of groups of processes in a thread of its own, from :meth:`start` to :meth:`stop`.

    ``groups`` maps a name to a function giving the group's pids (asked at each sample: a process started after
    the sampler counts from its first sample on).
    """

    def __init__(self, groups: Mapping[str, Callable[[], Sequence[int]]], interval_s: float = 0.002) -> None:
        self.groups = dict(groups)
        self.interval_s = interval_s
        self.samples: list[tuple[float, dict[str, int]]] = []  # (epoch seconds, nanoseconds by group)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def start(self) -> CpuSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            at = time.time()
            self.samples.append((at, {name: sum(cpu_ns(pid) for pid in pids()) for name, pids in self.groups.items()}))
            self._stop.wait(self.interval_s)

    def between(self, start: float, end: float) -> dict[str, float]:
        """Each group's CPU seconds from the first sample at or after ``start`` to the last at or before ``end``
        (epoch seconds); empty when fewer than two samples fall inside."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return {}
        (_, first), (_, last) = inside[0], inside[-1]
        return {name: (last[name] - first[name]) / 1e9 for name in self.groups}
