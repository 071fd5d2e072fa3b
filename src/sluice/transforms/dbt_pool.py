"""Long-lived dbt workers (:mod:`sluice.transforms.dbt_worker`) kept per dbt project, so a model's run does
not pay dbt's start-up and parse (docs/models.md, "How it runs").

A worker runs in dbt's own environment: the Python of the ``dbt`` executable's ``#!`` line. A pool is
keyed by that Python, the project's flags, its manifest stamp (:data:`sluice.project.dbt_cli.PARSE_DIR`)
and the environment (the profile reads it), so an edited project or a changed environment gets fresh
workers. Each worker serves one invocation at a time; a busy pool starts another. Workers end when
standard input closes: with :func:`close_all` or at the process's exit.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

from sluice.project.dbt_cli import PARSE_DIR, DbtInvocation

_WORKER = Path(__file__).with_name("dbt_worker.py")
_LOCK = threading.Lock()
_IDLE: dict[str, list[DbtWorker]] = {}


class WorkerUnavailable(Exception):
    """A worker could not start or died; the caller runs dbt as a plain subprocess instead. Internal."""


def worker_python(executable: str) -> str | None:
    """The Python interpreter of a ``dbt`` console script (its ``#!`` line), or None when it has none."""
    try:
        with open(executable, "rb") as handle:
            first = handle.readline(512).decode("utf-8", "replace").strip()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    command = first[2:].strip().split()
    return command[0] if command and "python" in Path(command[0]).name and os.access(command[0], os.X_OK) else None


class DbtWorker:
    """One worker process; :meth:`invoke` sends one invocation and waits for its reply."""

    def __init__(self, python: str, invocation: DbtInvocation, parse_dir: Path) -> None:
        self.parse_dir = parse_dir
        flags = [*invocation.common(), "--target-path", str(parse_dir), "--log-path", str(parse_dir)]
        env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "NO_COLOR": "1"}
        self.process = subprocess.Popen(
            [python, str(_WORKER), json.dumps(flags)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=invocation.project_dir,
            env=env,
        )
        try:
            ready = self._reply()
        except (WorkerUnavailable, ValueError):
            self.close()
            raise WorkerUnavailable("the dbt worker exited as it started") from None
        if not ready.get("ready"):
            self.close()
            why = "; ".join(ready.get("errors") or []) or ready.get("exception") or "it printed nothing"
            raise WorkerUnavailable(f"the dbt worker did not start: {why}")

    def _reply(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise WorkerUnavailable(f"the dbt worker exited (code {self.process.poll()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def invoke(self, args: list[str]) -> dict[str, Any]:
        """Run ``dbt <args>`` in the worker: ``{"success", "exception", "errors"}``. Raises WorkerUnavailable."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps({"args": args}) + "\n")
            self.process.stdin.flush()
        except OSError as exc:
            raise WorkerUnavailable(f"the dbt worker is gone: {exc}") from None
        return self._reply()

    def close(self) -> None:
        """End the worker (closing its input ends its loop; killed if it does not stop in 10 s) and remove
        its parse folder."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()
            shutil.rmtree(self.parse_dir, ignore_errors=True)


def _key(python: str, invocation: DbtInvocation) -> str:
    stamp = invocation.project_dir / PARSE_DIR / "sluice.stamp"
    digest = hashlib.blake2b(digest_size=16)
    for part in (python, json.dumps(invocation.common()), stamp.read_text() if stamp.is_file() else ""):
        digest.update(part.encode() + b"\0")
    for name, value in sorted(os.environ.items()):
        digest.update(f"{name}={value}\0".encode())
    return digest.hexdigest()


def invoke(invocation: DbtInvocation, args: list[str]) -> dict[str, Any]:
    """Run ``dbt <args>`` for ``invocation``'s project in an idle worker of its pool (started when none is
    idle). Raises WorkerUnavailable when no worker can run it (no Python behind the executable, a worker
    that fails to start or dies); then the caller runs dbt as a subprocess."""
    python = worker_python(invocation.executable)
    if python is None:
        raise WorkerUnavailable(f"{invocation.executable} is not a Python console script")
    key = _key(python, invocation)
    with _LOCK:
        idle = _IDLE.get(key)
        worker = idle.pop() if idle else None
        stale = [w for k, ws in _IDLE.items() if k != key and _same_project(k, invocation) for w in ws]
    for old in stale:
        _discard(old)
    if worker is None:
        parse_dir = invocation.project_dir / PARSE_DIR / f"worker-{uuid.uuid4().hex}"
        parse_dir.mkdir(parents=True)
        cached = invocation.project_dir / PARSE_DIR / "partial_parse.msgpack"
        if cached.is_file():
            shutil.copyfile(cached, parse_dir / cached.name)
        worker = DbtWorker(python, invocation, parse_dir)
        with _LOCK:
            _PROJECTS[key] = invocation.project_dir
    try:
        reply = worker.invoke(args)
    except WorkerUnavailable:
        worker.close()
        raise
    with _LOCK:
        _IDLE.setdefault(key, []).append(worker)
    return reply


_PROJECTS: dict[str, Path] = {}


def _same_project(key: str, invocation: DbtInvocation) -> bool:
    return _PROJECTS.get(key) == invocation.project_dir


def _discard(worker: DbtWorker) -> None:
    with _LOCK:
        for workers in _IDLE.values():
            if worker in workers:
                workers.remove(worker)
    worker.close()


def close_all() -> None:
    """End every idle worker of this process."""
    with _LOCK:
        workers = [w for ws in _IDLE.values() for w in ws]
        _IDLE.clear()
    for worker in workers:
        worker.close()


atexit.register(close_all)
