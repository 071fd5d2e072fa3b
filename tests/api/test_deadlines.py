"""Client-side deadlines: a connection still armed after its allowance has its socket shut down, which ends a
read blocked on it; a disarmed one is left alone; an idle socket with something to read is told apart."""

from __future__ import annotations

import socket
import threading

from helpers import wait_for
from sluice.api.deadlines import Deadlines, readable


class Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock


def test_an_overrun_connection_is_cut_and_a_disarmed_one_is_not() -> None:
    ours, theirs = socket.socketpair()
    kept, kept_peer = socket.socketpair()
    with ours, theirs, kept, kept_peer:
        deadlines = Deadlines("hr", 0.2, lambda conn: conn.sock.fileno())
        stuck, fine = Conn(ours), Conn(kept)
        deadlines.arm(fine)
        assert deadlines.disarm(fine) is False
        read: list[bytes] = []
        deadlines.arm(stuck)
        reader = threading.Thread(target=lambda: read.append(ours.recv(10)))  # the peer never writes
        reader.start()
        reader.join(30)
        assert not reader.is_alive() and read == [b""]  # the blocked read ended: an end of file
        assert deadlines.disarm(stuck) is True  # the caller learns it was cut: the connection is not reused
        kept_peer.sendall(b"x")
        assert kept.recv(1) == b"x"  # the disarmed one still works


def test_expire_cuts_only_what_is_due() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        deadlines = Deadlines("hr", 3600, lambda conn: conn.sock.fileno())
        conn = Conn(ours)
        deadlines.arm(conn)
        assert deadlines.expire(0.0) == 0
        assert deadlines.expire(float("inf")) == 1
        assert deadlines.disarm(conn) is True


def test_readable_tells_a_closed_peer_from_a_quiet_one() -> None:
    ours, theirs = socket.socketpair()
    with ours:
        assert readable(ours.fileno()) is False
        theirs.close()
        wait_for(lambda: readable(ours.fileno()), 10, "the end of file to show")
