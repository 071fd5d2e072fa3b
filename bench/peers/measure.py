"""Run a peer orchestrator benchmark in its own venv and return its result.

Standard library only, so Sluice's benchmark can import it directly::

    from measure import measure_peer
    measure_peer("dagster", objects=2000, layers=3)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

PEERS_DIR = Path(__file__).resolve().parent
VENVS_DIR = PEERS_DIR.parent / ".venvs"
SETUP_SCRIPT = PEERS_DIR / "setup_venvs.sh"
TOOLS = ("dagster", "prefect")
_STDERR_TAIL_CHARS = 4000


def venv_python(tool: str) -> Path:
    """Path of the python interpreter in the tool's venv."""
    return VENVS_DIR / tool / "bin" / "python"


def ensure_venv(tool: str, timeout_s: float = 900) -> None:
    """Run setup_venvs.sh for ``tool`` if its venv does not exist yet."""
    if venv_python(tool).exists():
        return
    proc = subprocess.run(
        ["bash", str(SETUP_SCRIPT), tool],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"setup_venvs.sh {tool} failed (exit {proc.returncode}):\n{_tail(proc.stderr + proc.stdout)}")


def _tail(text: str) -> str:
    return text[-_STDERR_TAIL_CHARS:]


def _run(cmd: list[str], timeout_s: float) -> tuple[int, str, str]:
    """Run ``cmd`` in its own process group; kill the whole group on timeout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=PEERS_DIR,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise RuntimeError(f"{' '.join(cmd)} timed out after {timeout_s:.0f}s:\n{_tail(err)}") from None
    return proc.returncode, out, err


def measure_peer(tool: str, objects: int, layers: int, timeout_s: float = 900) -> dict[str, Any]:
    """Time ``tool`` ("dagster" or "prefect") on ``layered_dag(objects, layers)``.

    Returns the script's JSON result: tool, version, objects, layers, seconds,
    objects_per_s. Raises RuntimeError (with the stderr tail) on failure.
    """
    if tool not in TOOLS:
        raise ValueError(f"unknown peer {tool!r}; expected one of {TOOLS}")
    ensure_venv(tool)
    cmd = [
        str(venv_python(tool)),
        str(PEERS_DIR / f"run_{tool}.py"),
        "--objects",
        str(objects),
        "--layers",
        str(layers),
    ]
    code, out, err = _run(cmd, timeout_s)
    if code != 0:
        raise RuntimeError(f"{tool} benchmark failed (exit {code}):\n{_tail(err)}")
    for line in reversed(out.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                result: dict[str, Any] = json.loads(line)
            except json.JSONDecodeError:
                continue
            if result.get("tool") == tool:
                return result
    raise RuntimeError(f"{tool} benchmark printed no JSON result.\nstdout:\n{_tail(out)}\nstderr:\n{_tail(err)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure peer orchestrators.")
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS))
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args(argv)

    failed = False
    for tool in args.tools:
        try:
            result = measure_peer(tool, args.objects, args.layers, args.timeout)
        except RuntimeError as exc:
            print(f"{tool}: FAILED: {exc}", file=sys.stderr)
            failed = True
            continue
        print(
            f"{tool:8} {result['version']:>8}  {result['objects']} objects / "
            f"{result['layers']} layers  {result['seconds']:.2f}s  "
            f"{result['objects_per_s']:.1f} objects/s"
        )
        print(json.dumps(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
