"""``sluice sync verify PATH [--name N] [--json]``: the report of :mod:`sluice.cdc.verify`, one table per sync.

The ``sluice sync`` command group (``cli/sync.py``) resolves each sync's tables (its source's table list
through the capture plugin, then the ``tables:``/``rename:``/``columns:`` rules) and calls
:func:`verify_and_report` once per sync. On a terminal the report is a rich table; piped (or in CI logs) it
is plain lines that never wrap; ``--json`` prints one JSON document per sync. Verification of one table that
fails (a missing table, a database that does not answer) is reported on that table's row and makes the
sync unequal; the other tables are still compared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import msgspec
from rich import box
from rich.table import Table

from sluice.cdc.base import TableRef
from sluice.cdc.verify import KeyDifference, TableVerdict, VerifyError, verify_table
from sluice.cli.progress import make_console

KEYS_SHOWN = 5
"""Differing keys printed per table in the table view (``--json`` has them all, up to ``max_keys``)."""


@dataclass(slots=True)
class SyncVerdict:
    """What verify found for one sync: a verdict per table, and the tables it could not verify with why."""

    name: str
    source: str
    target: str
    tables: list[TableVerdict] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    """Source table -> why it could not be verified."""

    @property
    def equal(self) -> bool:
        return not self.errors and all(table.equal for table in self.tables)


def verify_sync(
    name: str,
    source: tuple[str, str],
    target: tuple[str, str],
    refs: Sequence[TableRef],
    chunk_rows: int = 100_000,
    max_keys: int = 100,
    verify: Callable[[str, str, TableRef, int, int], TableVerdict] = verify_table,
) -> SyncVerdict:
    """Verify every table of ``refs``; ``source``/``target`` are ``(connection name, URL)``.

    A :class:`VerifyError` of one table is recorded in :attr:`SyncVerdict.errors`; the others go on."""
    verdict = SyncVerdict(name, source[0], target[0])
    for ref in refs:
        try:
            verdict.tables.append(verify(source[1], target[1], ref, chunk_rows, max_keys))
        except VerifyError as exc:
            verdict.errors[ref.source.qualified] = str(exc)
    return verdict


def as_json(verdict: SyncVerdict) -> dict[str, Any]:
    """The JSON document of ``--json``: ``{name, source, target, equal, tables: [...], errors: {...}}``."""
    tables = []
    for table in verdict.tables:
        body: dict[str, Any] = {f.name: getattr(table, f.name) for f in fields(table) if f.name != "differences"}
        body["differences"] = [_difference(d) for d in table.differences]
        tables.append(body)
    return {
        "name": verdict.name,
        "source": verdict.source,
        "target": verdict.target,
        "equal": verdict.equal,
        "tables": tables,
        "errors": verdict.errors,
    }


def _difference(difference: KeyDifference) -> dict[str, Any]:
    """``{key, kind}``, plus ``columns`` (the differing columns) for a ``changed`` key."""
    body: dict[str, Any] = {"key": difference.key, "kind": difference.kind}
    if difference.kind == "changed":
        body["columns"] = difference.columns
    return body


def _keys(table: TableVerdict) -> str:
    shown = [
        f"{d.kind} key {','.join(d.key)}" + (f" ({', '.join(d.columns)})" if d.columns else "")
        for d in table.differences[:KEYS_SHOWN]
    ]
    more = len(table.differences) - KEYS_SHOWN
    if more > 0 or table.more_differences:
        shown.append(f"+{max(more, 0)}{'+' if table.more_differences else ''} more key(s)")
    if table.missing_columns:
        shown.insert(0, f"target lacks column(s) {', '.join(table.missing_columns)}")
    return "; ".join(shown)


def report(verdict: SyncVerdict, json_output: bool = False, echo: Callable[[str], None] | None = None) -> None:
    """Print ``verdict``: a table on a terminal, plain lines when piped, one JSON document with ``json_output``."""
    if json_output:
        text = msgspec.json.encode(as_json(verdict)).decode()
        (echo or print)(text)
        return
    console = make_console()
    title = f"sync {verdict.name}: {verdict.source} -> {verdict.target}: {'EQUAL' if verdict.equal else 'DIFFERENT'}"
    grid = Table(title=title, title_justify="left", box=box.HEAVY_HEAD if console.is_terminal else None)
    for column in ("table", "target", "source rows", "target rows", "chunks", "result", "differing keys", "seconds"):
        grid.add_column(column, justify="right" if column in ("source rows", "target rows", "chunks", "seconds") else "left")
    for table in verdict.tables:
        grid.add_row(
            table.source_table,
            table.target_table,
            f"{table.source_rows:,}",
            f"{table.target_rows:,}",
            f"{table.chunks_differing}/{table.chunks_compared}" if table.chunks_differing else str(table.chunks_compared),
            "equal" if table.equal else "DIFFERENT",
            _keys(table),
            f"{table.seconds:.2f}",
        )
    for source_table, error in verdict.errors.items():
        grid.add_row(source_table, "", "", "", "", "ERROR", error, "")
    if echo is None:
        console.print(grid)
    else:
        with console.capture() as captured:
            console.print(grid)
        echo(captured.get().rstrip("\n"))


def verify_and_report(
    name: str,
    source: tuple[str, str],
    target: tuple[str, str],
    refs: Sequence[TableRef],
    *,
    json_output: bool = False,
    chunk_rows: int = 100_000,
    max_keys: int = 100,
    echo: Callable[[str], None] | None = None,
) -> bool:
    """:func:`verify_sync` then :func:`report`; True when every table is equal (the CLI exits 1 otherwise)."""
    verdict = verify_sync(name, source, target, refs, chunk_rows, max_keys)
    report(verdict, json_output, echo)
    return verdict.equal
