"""A process of this host is alive when it exists and is not a zombie."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import wait_for
from sluice.pids import pid_alive, proc_state


def test_a_killed_process_not_yet_reaped_is_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])  # not waited for: a zombie once it exits
    try:
        wait_for(lambda: proc_state(child.pid) == "Z", 30, "the child to exit")
        os.kill(child.pid, 0)  # the signal check alone still finds it
        assert not pid_alive(child.pid)
    finally:
        child.wait()
    assert not pid_alive(child.pid)
    assert pid_alive(os.getpid())


def test_the_state_is_read_after_the_last_parenthesis_of_the_command_name(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "stat").write_text("42 (a) b) (c) Z 1 42 42 0 -1\n")
    assert proc_state(42, tmp_path) == "Z"
    assert proc_state(43, tmp_path) == ""  # no such process
