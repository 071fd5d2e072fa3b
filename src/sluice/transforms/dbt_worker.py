"""A long-lived dbt process: dbt-core's programmatic runner with the project parsed once (docs/models.md).

This file runs in dbt's own virtual environment (``.venv-dbt/bin/python dbt_worker.py '<flags as JSON>'``),
never inside Sluice: it imports only the standard library and dbt-core. At start it parses the project
(``dbtRunner().invoke(["parse", ...])``, https://docs.getdbt.com/reference/programmatic-invocations) and
prints ``{"ready": true}``; then, for each line ``{"args": [...]}`` on standard input, it runs
``dbtRunner(manifest=<the parsed manifest>).invoke(args)`` and prints one line
``{"success": bool, "exception": str | null, "errors": [str]}`` (``errors``: the messages of dbt's
error-level events). dbt's own console output goes to standard error. One invocation at a time: dbt
is not safe for several at once in one process; Sluice starts one worker per object running in parallel.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def main() -> None:
    """Serve invocations on stdin/stdout until stdin closes (see the module's docs)."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]  # this folder's dbt.py is not dbt
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # dbt prints to stdout: keep the protocol's stream for replies only
    flags = json.loads(sys.argv[1])
    from dbt.cli.main import dbtRunner  # type: ignore[import-not-found,unused-ignore]

    errors: list[str] = []

    def collect(event: Any) -> None:
        if getattr(event.info, "level", "") == "error":
            errors.append(str(event.info.msg))

    parsed = dbtRunner(callbacks=[collect]).invoke(["parse", *flags])
    if not parsed.success:
        reply = {"ready": False, "exception": str(parsed.exception or ""), "errors": errors}
        protocol.write(json.dumps(reply) + "\n")
        return
    runner = dbtRunner(manifest=parsed.result, callbacks=[collect])
    protocol.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        errors.clear()
        try:
            result = runner.invoke(request["args"])
            reply = {"success": bool(result.success), "exception": str(result.exception or "") or None, "errors": errors}
        except Exception as exc:  # any failure of dbt is reported to Sluice, which decides
            reply = {"success": False, "exception": f"{type(exc).__name__}: {exc}", "errors": errors}
        protocol.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
