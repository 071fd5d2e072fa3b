"""``engine: dbt``: a node of a dbt project (``dbt:`` in sluice.yaml) run by dbt-core itself (docs/models.md).

Each run is ``dbt run --select <model>`` (``dbt seed`` / ``dbt snapshot`` for those nodes) in a subprocess
(:mod:`sluice.project.dbt_cli` says why), writing its artifacts to a folder of its own under
``<dbt project>/target/sluice-runs/`` so objects of one project run in parallel without mixing their
``run_results.json``; dbt's partial-parse file from the load is copied there, so dbt does not parse the
project again. From ``run_results.json`` (https://docs.getdbt.com/reference/artifacts/run-results-json):

- ``success``: rows counted are ``adapter_response.rows_affected`` (0 for a view);
- ``error``: a :class:`~sluice.errors.TerminalError` with the first line of dbt's message and the model's
  file; a :class:`~sluice.errors.TransientError` (retried per the project's ``retry``) when the message
  says the database could not be reached or two invocations raced on the catalog (both creating one schema);
- no result for the node (dbt stopped before running it): dbt's first error line, transient when it is a
  connection failure.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sluice.errors import TerminalError, TransientError
from sluice.project.dbt_cli import PARSE_DIR, DbtError, DbtInvocation, find_executable, first_error
from sluice.project.model import ObjectSpec
from sluice.transforms import dbt_pool
from sluice.transforms.models import Materialized, ModelEngine, model_of

RUNS_DIR = "target/sluice-runs"
_TRANSIENT = (
    "could not connect",
    "connection refused",
    "connection to server",
    "timeout expired",
    "timed out",
    "server closed the connection",
    "could not translate host name",
    "the database system is starting up",
    "too many connections",
    # two dbt invocations of one project run at once (objects of a stage run in parallel), each with its own
    # `create schema if not exists`: PostgreSQL lets both past the check and one fails on the catalog's unique
    # index; the retry finds the schema there
    "pg_namespace_nspname_index",
    "pg_type_typname_nsp_index",
    "tuple concurrently updated",
    "deadlock detected",
    "could not serialize access",
)


def is_transient(message: str) -> bool:
    """Whether dbt's ``message`` says the database could not be reached, or lost a race between two concurrent
    invocations on the catalog (a schema created twice at once, a deadlock): worth retrying."""
    lowered = message.lower()
    return any(marker in lowered for marker in _TRANSIENT)


def node_result(results: Any, unique_id: str) -> dict[str, Any] | None:
    """The entry of ``run_results.json``'s decoded ``results`` for ``unique_id``, if any."""
    for entry in results.get("results", []) if isinstance(results, dict) else []:
        if isinstance(entry, dict) and entry.get("unique_id") == unique_id:
            return entry
    return None


class DbtEngine(ModelEngine):
    """Runs the objects a ``dbt:`` section made; see the module's docs."""

    def input_fingerprint(self, obj: ObjectSpec) -> str | None:
        """None (run every time) for a node reading dbt sources no Sluice object writes; "" otherwise."""
        return None if obj.model is not None and obj.model.sources else ""

    def invocation(self, obj: ObjectSpec, object_label: str) -> DbtInvocation:
        """How to call dbt for ``obj``'s project. Raises TerminalError when dbt cannot be found."""
        config = model_of(obj, object_label).config
        root = self.project.root
        try:
            executable = find_executable(config.get("executable"), root)
        except DbtError as exc:
            raise TerminalError(f"{object_label}: {exc}") from None
        profiles = config.get("profiles_dir")
        return DbtInvocation(
            executable,
            (root / str(config["dbt_project"])).resolve(),
            (root / profiles).resolve() if profiles else None,
            config.get("target"),
        )

    def materialize(self, obj: ObjectSpec, inputs: Mapping[str, str], *, object_label: str) -> Materialized:
        model = model_of(obj, object_label)
        if "unique_id" not in model.config:
            raise TerminalError(f"{object_label}: is not a node of a dbt: project; engine dbt runs those only")
        invocation = self.invocation(obj, object_label)
        label = f"{object_label} ({model.path})"
        unique_id = str(model.config["unique_id"])
        work = invocation.project_dir / RUNS_DIR / uuid.uuid4().hex
        work.mkdir(parents=True)
        try:
            selector = unique_id.split(".", 2)[-1] if model.config.get("command") != "run" else obj.name
            command = [str(model.config.get("command") or "run"), "--select", selector]
            output, code = self._call(invocation, command, work)
            results_file = work / "run_results.json"
            entry = node_result(json.loads(results_file.read_text()), unique_id) if results_file.is_file() else None
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if entry is None:
            message = first_error(output)
            error = TransientError if is_transient(message) else TerminalError
            raise error(f"{label}: dbt ran nothing for {unique_id} ({code}): {message}")
        status = str(entry.get("status"))
        if status in ("success", "pass"):
            response = entry.get("adapter_response") or {}
            rows = response.get("rows_affected") if isinstance(response, dict) else None
            return Materialized(None, rows=int(rows) if isinstance(rows, int) and rows >= 0 else 0, target=model.target)
        message = " ".join(str(entry.get("message") or first_error(output)).split("\n")[0].split())
        detail = _detail(str(entry.get("message") or ""))
        text = f"{label}: dbt {status}: {message}{': ' + detail if detail and detail not in message else ''}"
        if is_transient(str(entry.get("message") or "")):
            raise TransientError(text)
        raise TerminalError(text)

    def _call(self, invocation: DbtInvocation, command: list[str], work: Path) -> tuple[str, str]:
        """Run ``dbt <command>`` with its artifacts in ``work``: in a long-lived worker of the project
        (:mod:`sluice.transforms.dbt_pool`), else (``SLUICE_DBT_SUBPROCESS=1``, or no worker can start)
        as a subprocess. Returns dbt's error output and how it ended."""
        paths = ["--target-path", str(work), "--log-path", str(work)]
        if os.environ.get("SLUICE_DBT_SUBPROCESS") != "1":
            try:
                reply = dbt_pool.invoke(invocation, [*command, *invocation.common(), *paths])
            except dbt_pool.WorkerUnavailable:
                pass
            else:
                errors = [*(reply.get("errors") or []), str(reply.get("exception") or "")]
                return "\n".join(e for e in errors if e), "dbt succeeded" if reply.get("success") else "dbt failed"
        parsed = invocation.project_dir / PARSE_DIR / "partial_parse.msgpack"
        if parsed.is_file():
            shutil.copyfile(parsed, work / "partial_parse.msgpack")
        done = invocation.call(command, *paths)
        return done.stdout + done.stderr, f"exit {done.returncode}"


def _detail(message: str) -> str:
    """The line after dbt's error heading (``Database Error in model x`` is followed by PostgreSQL's message)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[1] if len(lines) > 1 else ""


__all__ = ["DbtEngine", "is_transient", "node_result"]
