"""The end-of-run lines of ``sluice sync run`` (:mod:`sluice.cli.sync`)."""

from __future__ import annotations

from sluice.cdc.status import SyncStatus, TableStatus
from sluice.cli.sync import child_failed, final_report


def table(name: str, **kw: object) -> TableStatus:
    return TableStatus(source_table=name, target_table=name, direction="a -> b", **kw)  # type: ignore[arg-type]


def test_summary_counts_dead_letters_and_conflicts_when_there_are_some() -> None:
    status = SyncStatus(
        name="s1",
        source="a",
        target="b",
        direction="one-way",
        tables=[table("app.t", applied={"insert": 7}, dead_letters=5, conflicts=2), table("app.u", dead_letters=1)],
    )
    problems, summary = final_report(status, "sluice_cdc")
    assert problems == []
    assert summary == (
        "sync s1 stopped: 7 row changes applied, 0 table(s) in error, 2 conflict(s) "
        "(see sluice_cdc.conflicts), 6 dead letter(s) (see sluice_cdc.dead_letters)"
    )


def test_summary_without_dead_letters_stays_short_and_errors_name_the_command() -> None:
    status = SyncStatus(
        name="s1", source="a", target="b", direction="one-way", tables=[table("app.t", state="error", error="boom")]
    )
    problems, summary = final_report(status)
    assert summary == "sync s1 stopped: 0 row changes applied, 1 table(s) in error"
    assert problems == ["table app.t stopped: boom (fix it, then 'sluice sync resync PATH app.t')"]


def test_capture_failure_line_starts_on_its_own_line() -> None:
    assert child_failed(2).startswith("\nerror: the capture process exited with status 2")
