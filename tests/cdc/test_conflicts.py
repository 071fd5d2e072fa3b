"""Newer-wins conflict resolution: where the resolver waits for the target side's local versions."""

from __future__ import annotations

import threading
import time
from typing import Any

import msgspec

from sluice.cdc.base import Conflict
from sluice.cdc.conflicts import ConflictLog, ConflictResolver, LocalVersions, lookups_outside, same_image
from sluice.cdc.events import ChangeEvent, Source, version_id

SRC_ROW = {"id": 1, "name": "src version", "n": 1}
DST_ROW = {"id": 1, "name": "dst version", "n": 2}


def incoming(commit_ts_us: int) -> Conflict:
    """The src side's update of key 1 meeting the dst side's own update of it."""
    source = Source("fake", "src", [7], "7", commit_ts_us)
    event = ChangeEvent("u", "app.emp", [1], source, before={"id": 1, "name": "n1", "n": 1}, after=SRC_ROW)
    return Conflict(event, DST_ROW)


def test_newer_wins_waits_for_the_local_version_outside_the_target_transaction() -> None:
    """The target side's capture may need what the apply transaction holds (here one lock, as the test fakes'
    database, and formerly the cause of "local time unknown" verdicts under load): the resolver must not wait
    for it inside the transaction. The capture below can record only once the transaction let the lock go."""
    local = LocalVersions()
    log = ConflictLog(None)
    resolve = ConflictResolver("newer-wins", True, lambda table: "public.emp", local, log, "src -> dst", wait_s=60.0)
    database = threading.Lock()
    src_ts = time.time_ns() // 1000 - 1_000_000
    captures: list[threading.Thread] = []

    def capture() -> None:  # reads the target's log, which needs the database
        with database:
            local.record("public.emp", [1], src_ts + 10_000)  # the local version is the newer one

    def transaction() -> list[bool]:
        with database:
            if not captures:  # started while the transaction holds the database: it cannot record before
                captures.append(threading.Thread(target=capture))
                captures[0].start()
            return resolve([incoming(src_ts)])

    verdicts = lookups_outside(transaction)
    captures[0].join()
    assert verdicts == [False]  # the newer dst version stays
    assert log.count == 1  # the rolled-back run recorded nothing


def test_newer_wins_with_a_local_time_capture_never_read_goes_to_the_source_side() -> None:
    """Capture has read past the conflict and never saw the key (an evicted entry): no wait, source side wins."""
    local = LocalVersions()
    local.caught_up(time.time_ns() // 1000 + 60_000_000)
    log = ConflictLog(None)
    resolve = ConflictResolver("newer-wins", True, lambda table: "public.emp", local, log, "src -> dst", wait_s=60.0)
    assert lookups_outside(lambda: resolve([incoming(time.time_ns() // 1000)])) == [True]
    assert log.count == 1


def change(op: str, side: str, position: int, before: dict[str, Any] | None, after: dict[str, Any] | None) -> ChangeEvent:
    """A change of key 1 of ``app.emp`` captured on ``side`` at ``position`` (commit time: the position in µs)."""
    return ChangeEvent(op, "app.emp", [1], Source("fake", side, [position], str(position), position), before, after)  # type: ignore[arg-type]


def test_newer_wins_compares_with_the_version_that_is_the_current_row() -> None:
    """Not with the key's last version capture read: the current row may be an older one (capture read a
    newer change the row no longer shows) or one capture has not read yet (then it waits for it)."""
    local = LocalVersions()
    older, newer = {"id": 1, "name": "older", "n": 1}, {"id": 1, "name": "newer", "n": 2}
    local.record("public.emp", [1], 100, older)
    local.record("public.emp", [1], 300, newer)
    resolve = ConflictResolver(
        "newer-wins", True, lambda table: "public.emp", local, ConflictLog(None), "src -> dst", wait_s=60.0
    )
    event = incoming(200).event
    assert resolve([Conflict(event, older, same_image(older))]) == [True]  # 200 > 100, though 300 was read
    assert resolve([Conflict(event, newer, same_image(newer))]) == [False]
    unread = {"id": 1, "name": "unread", "n": 3}
    later = threading.Timer(0.2, lambda: local.record("public.emp", [1], 250, unread))
    later.start()
    assert lookups_outside(lambda: resolve([Conflict(event, unread, same_image(unread))])) == [False]  # waited: 250
    later.join()


def test_capture_stamps_each_change_with_the_version_it_replaced() -> None:
    local = LocalVersions()
    a, b = {"id": 1, "n": 1}, {"id": 1, "n": 2}
    inserted = local.read("app.emp", change("c", "my", 1, None, a))
    assert inserted.base == ""  # the key was never seen here
    updated = local.read("app.emp", change("u", "my", 2, a, b))
    assert updated.base == version_id(inserted)
    deleted = local.read("app.emp", change("d", "my", 3, b, None))
    assert deleted.base == version_id(updated)
    assert local.read("app.emp", change("c", "my", 4, None, a)).base == version_id(deleted)  # insert after delete
    # A version apply wrote here from the other side is what a local change based on it replaced.
    resolver = ConflictResolver("source-wins", True, lambda table: "app.emp", local, ConflictLog(None), "pg -> my")
    applied = change("u", "pg", 9, a, {"id": 1, "n": 7})
    resolver.taken(applied)
    assert local.read("app.emp", change("u", "my", 5, {"id": 1, "n": 7}, b)).base == version_id(applied)


def test_a_change_that_never_saw_the_current_rows_version_conflicts_even_when_the_images_agree() -> None:
    """An insert meeting no row is not an insert into the same emptiness: the target's own delete, which the
    incoming side never received, made it (both-ways: apply records what it writes, so the other side knows)."""
    here = LocalVersions()
    resolver = ConflictResolver("newer-wins", True, lambda table: "public.emp", here, ConflictLog(None), "my -> pg")
    insert_there = change("c", "my", 5, None, {"id": 1, "n": 1})
    no_row = same_image(None)
    assert not resolver.base_conflicts(insert_there, no_row)  # nothing known here: the images decide
    local_delete = here.read("public.emp", change("d", "pg", 3, {"id": 1, "n": 0}, None))
    assert resolver.base_conflicts(insert_there, no_row)
    assert not resolver.base_conflicts(msgspec.structs.replace(insert_there, base=version_id(local_delete)), no_row)


def test_newer_wins_with_the_current_row_still_unread_knows_it_is_newer_than_the_last_version_read() -> None:
    """Capture reported it read past the decision (an estimate), yet the current row of a key with versions
    read is none of them: it is a local change not read yet, so it waits for it (here: in vain, 0.2 s) and then
    knows it is newer than the last local version read, not "unknown" (where the source side would win here
    and lose on the other side, which compares with the real time)."""
    local = LocalVersions()
    local.record("public.emp", [1], 500, {"id": 1, "name": "read", "n": 1}, version="dst:1")
    local.record("public.emp", [1], 900, {"id": 1, "name": "from src", "n": 5}, version="src:1")  # apply wrote it
    local.caught_up(time.time_ns() // 1000 + 60_000_000)
    resolve = ConflictResolver("newer-wins", True, lambda table: "public.emp", local, ConflictLog(None), "src -> dst", wait_s=0.2)
    unread = {"id": 1, "name": "unread", "n": 2}
    assert lookups_outside(lambda: resolve([Conflict(incoming(400).event, unread, same_image(unread))])) == [False]
    # Newer than the last local version read (500): unknown, the declared source side wins as before; the
    # version apply wrote (900, the other side's clock) is no bound.
    assert lookups_outside(lambda: resolve([Conflict(incoming(600).event, unread, same_image(unread))])) == [True]
