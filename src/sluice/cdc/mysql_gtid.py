"""GTID positions of the MariaDB capture (``capture: {position_mode: gtid}``).

A GTID position is ``[seq, event, row, domain, server]``, a :data:`~sluice.cdc.events.Position` compared in
list order like every other:

* between transactions (after a commit, a DDL, a heartbeat, :meth:`MysqlCapture.current_position`):
  ``[seq, 0, 0, domain, server]``, where ``domain-server-seq`` is the last GTID done, and the stream resumes
  after it by GTID (``SET @slave_connect_state = 'domain-server-seq'``);
* a row change of the transaction that follows that GTID: ``[seq, event, row, domain, server]``, with the same
  ``seq``/``server`` (the GTID *before* the transaction), ``event`` the rows event's number in the transaction
  (from 1, every rows event counted, captured table or not) and ``row`` the row's number in that event (from 1).
  Resuming from it asks for the GTID before the transaction and leaves out the rows at or before it.

So positions order by sequence number first, which is the commit order within one replication domain: Sluice
follows one domain (``check()`` refuses a server whose ``@@gtid_binlog_pos`` has several; the stream stops on
a transaction of another domain or a sequence number that goes back, which only a server without
``gtid_strict_mode`` can write). Binlog file names and offsets are not part of the position: a resume finds
its place whatever the files became (rotated, flushed, purged up to the GTID, or another server with the same
GTIDs); ``position_text`` shows both (``0-1-42 (binlog.000007:1234)``). The empty GTID state (a binlog
that never had a GTID) is ``[0, 0, 0, @@gtid_domain_id, 0]`` and resumes from the oldest binlog.

MariaDB's GTID documentation ("GTID", ``BINLOG_GTID_POS``) and the way its replicas and Debezium's MariaDB
connector resume (a GTID list, then ``COM_BINLOG_DUMP`` with an empty file name) are the source of this scheme.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sluice.cdc.base import SyncError
from sluice.cdc.events import Position

GTID_FIELDS = 5
"""Length of a GTID position (a file position has 3)."""
FAST_TRIES = 3
"""Tries of the lock-free GTID read (:func:`snapshot_gtid`) before it scans the binlog file instead."""

Query = Callable[..., list[tuple[Any, ...]]]


def parse_gtid_list(text: str | None) -> dict[int, tuple[int, int]]:
    """A MariaDB GTID list as ``{domain: (server id, sequence)}``; raises :class:`ValueError` when malformed.

    >>> parse_gtid_list("0-1-42,3-2-7")
    {0: (1, 42), 3: (2, 7)}
    >>> parse_gtid_list("")
    {}
    """
    out: dict[int, tuple[int, int]] = {}
    for part in (text or "").replace("\n", "").split(","):
        if part.strip():
            domain, server, seq = (int(field) for field in part.strip().split("-"))
            out[domain] = (server, seq)
    return out


def gtid_problems(version: str, binlog_pos: str | None) -> list[str]:
    """Why ``position_mode: gtid`` cannot capture this server (one line each); empty when it can.

    ``version``: ``@@version``; ``binlog_pos``: ``@@gtid_binlog_pos`` (``None`` on MySQL, which has none).

    >>> gtid_problems("10.11.6-MariaDB", "0-1-42")
    []
    >>> gtid_problems("10.11.6-MariaDB", "0-1-42,1-2-3")[0].split(":")[0]
    'the binlog has GTIDs of 2 replication domains (@@gtid_binlog_pos = 0-1-42,1-2-3) and position_mode'
    """
    if "mariadb" not in version.lower():
        return [
            f"position_mode: gtid needs MariaDB (this server is MySQL {version}; MySQL's GTID dump, COM_BINLOG_DUMP_GTID, "
            "is not supported): set position_mode: file"
        ]
    domains = parse_gtid_list(binlog_pos)
    if len(domains) > 1:
        return [
            f"the binlog has GTIDs of {len(domains)} replication domains (@@gtid_binlog_pos = {binlog_pos}) and "
            "position_mode: gtid follows one: set position_mode: file, or retire the unused domains "
            "(purge their binlogs, then FLUSH BINARY LOGS DELETE_DOMAIN_ID = (...))"
        ]
    return []


def gtid_position(text: str | None, default_domain: int) -> Position:
    """The position after the GTID state ``text`` (one domain; ``""``: ``[0, 0, 0, default_domain, 0]``)."""
    state = parse_gtid_list(text)
    if len(state) > 1:
        raise SyncError(gtid_problems("MariaDB", text)[0])
    if not state:
        return [0, 0, 0, default_domain, 0]
    ((domain, (server, seq)),) = state.items()
    return [seq, 0, 0, domain, server]


def is_gtid_position(position: Position) -> bool:
    """Whether ``position`` has the GTID shape (``[seq, event, row, domain, server]``)."""
    return len(position) == GTID_FIELDS


def connect_state(position: Position) -> str:
    """The GTID list a dump from ``position`` starts after (``@slave_connect_state``): ``domain-server-seq``,
    or ``""`` for the empty state."""
    seq, domain, server = position[0], position[3], position[4]
    return f"{domain}-{server}-{seq}" if seq or server else ""


def gtid_text(position: Position, where: str = "") -> str:
    """``0-1-42 (binlog.000007:1234)``: the GTID state of ``position`` and, when known, where the binlog is."""
    state = connect_state(position) or "(empty GTID state)"
    if position[1]:
        state += f" +event {position[1]} row {position[2]}"
    return f"{state} ({where})" if where else state


def wrong_shape(position: Position, gtid: bool) -> str | None:
    """The error text when ``position`` was made by the other ``position_mode`` (the mode changed), else None."""
    if is_gtid_position(position) == gtid:
        return None
    made, now = ("file", "gtid") if gtid else ("gtid", "file")
    return (
        f"the position to resume from ({position}) was stored with position_mode: {made} and capture now uses "
        f"position_mode: {now} (set {made} back, or copy the tables again); "
        "run `sluice sync PATH --resnapshot` to take a new snapshot"
    )


def binlog_snapshot_point(query: Query) -> tuple[str, int] | None:
    """``(binlog file, offset)`` of the last transaction a consistent snapshot starting now holds, or None when
    the server gives none (MySQL has no such status variables; a MariaDB without binlog gives an empty file).

    MariaDB writes a transaction to the binlog before the engine commits it, so the binlog's end (``SHOW MASTER
    STATUS``) can be past a transaction a snapshot read right after does not see yet; this point cannot:
    ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` then ``binlog_snapshot_file``/``binlog_snapshot_position``
    (MariaDB documentation, "Enhancements for START TRANSACTION WITH CONSISTENT SNAPSHOT"). No lock is taken."""
    query("START TRANSACTION WITH CONSISTENT SNAPSHOT")
    try:
        return snapshot_point(query("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'"))
    finally:
        query("COMMIT")


def snapshot_point(status: Iterable[tuple[Any, ...]]) -> tuple[str, int] | None:
    """``(binlog file, offset)`` from the rows of ``SHOW SESSION STATUS LIKE 'binlog_snapshot_%'`` read in a
    consistent snapshot, None when there is none (:func:`binlog_snapshot_point`).

    >>> snapshot_point([("Binlog_snapshot_file", "binlog.000003"), ("Binlog_snapshot_position", "900")])
    ('binlog.000003', 900)
    >>> snapshot_point([]) is None
    True
    """
    values = {_text(name).lower(): _text(value) for name, value in status}
    file = values.get("binlog_snapshot_file", "")
    return (file, int(values["binlog_snapshot_position"])) if file else None


def snapshot_gtid(query: Query) -> tuple[str, str, int]:
    """``(GTID list, binlog file, offset)`` of the binlog point a consistent snapshot starting now would see.

    No lock: the snapshot's binlog file and offset (:func:`binlog_snapshot_point`). When no GTID was written
    while that read ran and the offset is the binlog's end (``SHOW MASTER STATUS``), ``@@gtid_binlog_pos`` is
    that point's GTID state; otherwise (writes in flight, :data:`FAST_TRIES` times) ``BINLOG_GTID_POS(file,
    offset)`` computes it, reading the binlog file from its start (about 1 s per GB). Reading
    ``@@gtid_binlog_pos`` alone could name a transaction written to the binlog but not committed yet in the
    engine, so a snapshot read after it could miss that transaction's rows. Raises :class:`SyncError`: transient
    when the server gives no state for the point, not when it gives no point (no binlog)."""
    file, offset = "", 0
    for _ in range(FAST_TRIES):
        before = _text(query("SELECT @@global.gtid_binlog_pos")[0][0])
        master = query("SHOW MASTER STATUS")
        point = binlog_snapshot_point(query)
        after = _text(query("SELECT @@global.gtid_binlog_pos")[0][0])
        if point is None:
            raise SyncError("the server gives no binlog position of a consistent snapshot (binlog_snapshot_file): is log_bin on?")
        file, offset = point
        if before == after and master and (_text(master[0][0]), int(master[0][1])) == (file, offset):
            return before, file, offset
    rows = query("SELECT BINLOG_GTID_POS(%s, %s)", (file, offset))
    if not rows or rows[0][0] is None:
        raise SyncError(f"the server gives no GTID state for binlog position {file}:{offset}", transient=True)
    return _text(rows[0][0]), file, offset


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value or "")
