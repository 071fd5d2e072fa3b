"""dbt-core as a command: where its executable is, ``dbt parse`` with a cache, and one node's run (docs/models.md).

Sluice runs dbt-core in a subprocess, in dbt's own virtual environment (``scripts/dbt-venv.sh`` makes
``.venv-dbt/``): dbt-core pins libraries Sluice's tools need newer, and dbt's programmatic runner is not
safe for several invocations at once in one process (https://docs.getdbt.com/reference/programmatic-invocations),
while Sluice's workers run objects in parallel. The executable is, in this order, the project's
``dbt.executable``, ``$SLUICE_DBT``, ``dbt`` on ``PATH``.

The manifest (``manifest.json``, dbt's artifact schema, https://schemas.getdbt.com/) is made by ``dbt parse``
into ``<dbt project>/target/sluice/`` and reused while a digest of the project's files, profile, target
and selection is unchanged, so loading ``sluice.yaml`` does not pay dbt's start-up each time.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sluice.errors import SluiceError

PARSE_DIR = "target/sluice"
"""Where, under the dbt project, Sluice's ``dbt parse`` writes its manifest and stamp."""
_SKIP_DIRS = {"target", "logs", ".git", "__pycache__", ".venv", ".venv-dbt"}
_HASHED = {".sql", ".yml", ".yaml", ".csv", ".py", ".md"}


class DbtError(SluiceError):
    """dbt cannot be found or refused the project; ``message`` is one line saying what to do."""


@dataclass(frozen=True, slots=True)
class DbtInvocation:
    """How to call dbt for one project: its executable, folder, profiles folder (None: dbt's default,
    ``~/.dbt``) and target (None: the profile's default)."""

    executable: str
    project_dir: Path
    profiles_dir: Path | None = None
    target: str | None = None

    def common(self) -> list[str]:
        """The flags every command gets: project and profiles folders, target, no usage statistics."""
        args = ["--project-dir", str(self.project_dir), "--no-send-anonymous-usage-stats"]
        if self.profiles_dir is not None:
            args += ["--profiles-dir", str(self.profiles_dir)]
        if self.target is not None:
            args += ["--target", self.target]
        return args

    def call(self, command: Sequence[str], *flags: str) -> subprocess.CompletedProcess[str]:
        """Run ``dbt <command> <common flags> <flags>``; its output captured as text. Raises DbtError when
        the executable cannot be started."""
        env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "NO_COLOR": "1"}
        try:
            return subprocess.run(
                [self.executable, *command, *self.common(), *flags],
                capture_output=True,
                text=True,
                env=env,
                cwd=self.project_dir,
                check=False,
            )
        except OSError as exc:
            raise DbtError(f"cannot run dbt ({self.executable}): {exc.strerror}; {INSTALL_HINT}") from None


INSTALL_HINT = "run scripts/dbt-venv.sh (dbt-core and dbt-postgres in .venv-dbt/) and set SLUICE_DBT, or dbt.executable"


def find_executable(configured: str | None, root: Path) -> str:
    """The dbt executable: ``configured`` (relative to ``root``), ``$SLUICE_DBT``, ``dbt`` on PATH. Raises DbtError."""
    for candidate in (configured, os.environ.get("SLUICE_DBT")):
        if candidate:
            path = Path(candidate).expanduser()
            if not path.is_absolute() and os.sep in candidate:
                path = root / path
            found = shutil.which(str(path))
            if found is None:
                raise DbtError(f"dbt executable '{candidate}' is not an executable file; {INSTALL_HINT}")
            return found
    found = shutil.which("dbt")
    if found is None:
        raise DbtError(f"dbt is not installed (no dbt on PATH); {INSTALL_HINT}")
    return found


def first_error(output: str) -> str:
    """The first line of dbt's output that says what went wrong (timestamps and colours removed)."""
    lines = [_clean(line) for line in output.splitlines()]
    lines = [line for line in lines if line]
    for marker in ("Error", "error", "ERROR", "Could not", "not found"):
        for index, line in enumerate(lines):
            if marker in line and not line.startswith(("Running with dbt", "Registered adapter")):
                detail = lines[index + 1] if line.rstrip().endswith(("Error", "Error:")) and index + 1 < len(lines) else ""
                return f"{line} {detail}".strip()
    return lines[-1] if lines else "dbt printed nothing"


def _clean(line: str) -> str:
    line = line.replace("\x1b[0m", "").strip()
    head, _, rest = line.partition("  ")
    if len(head) == 8 and head.count(":") == 2:  # dbt's "15:40:31  message"
        line = rest.strip()
    return line


def project_digest(invocation: DbtInvocation, extra: Sequence[str]) -> str:
    """A digest of the dbt project's files (sql, yml, csv, py, md; not ``target``/``logs``), its profile,
    target and ``extra`` (the selection): the manifest is reused while it is unchanged."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (invocation.executable, str(invocation.profiles_dir), str(invocation.target), *extra):
        digest.update(part.encode() + b"\0")
    profiles = (invocation.profiles_dir or Path.home() / ".dbt") / "profiles.yml"
    files = [profiles] if profiles.is_file() else []
    for dirpath, dirnames, filenames in os.walk(invocation.project_dir):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        files += [Path(dirpath) / f for f in sorted(filenames) if Path(f).suffix in _HASHED]
    for path in files:
        digest.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def manifest(invocation: DbtInvocation, select: str | None) -> tuple[dict[str, Any], set[str] | None]:
    """dbt's manifest of the project (``dbt parse``, cached; see the module's docs) and, with ``select``,
    the unique ids dbt's selection syntax picks (``dbt ls``). Raises DbtError with dbt's first error line."""
    out = invocation.project_dir / PARSE_DIR
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "sluice.lock", "w") as lock:  # processes loading the project at once parse it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _manifest(invocation, select, out)


def _manifest(invocation: DbtInvocation, select: str | None, out: Path) -> tuple[dict[str, Any], set[str] | None]:
    digest = project_digest(invocation, [select or ""])
    stamp, path, chosen = out / "sluice.stamp", out / "manifest.json", out / "selected.json"
    if not (stamp.is_file() and stamp.read_text() == digest and path.is_file()):
        done = invocation.call(["parse"], "--target-path", str(out), "--log-path", str(out))
        if done.returncode != 0 or not path.is_file():
            raise DbtError(f"dbt parse failed: {first_error(done.stdout + done.stderr)}")
        if select:
            listed = invocation.call(
                ["ls"], "--select", select, "--output", "json", "--output-keys", "unique_id", "--target-path", str(out), "--quiet"
            )
            if listed.returncode != 0:
                raise DbtError(f"dbt ls --select {select!r} failed: {first_error(listed.stdout + listed.stderr)}")
            ids = [json.loads(line)["unique_id"] for line in listed.stdout.splitlines() if line.startswith("{")]
            chosen.write_text(json.dumps(sorted(ids)))
        stamp.write_text(digest)
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise DbtError(f"{path} is not a dbt manifest; delete {out} and load again")
    selected = set(json.loads(chosen.read_text())) if select and chosen.is_file() else None
    return data, selected
