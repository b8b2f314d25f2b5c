# SPDX-License-Identifier: MIT
"""The clean close (closing.CleanClose) as bookkeeping: time passed in, no kernel."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from daytime_sd.closing import CleanClose, finished

LINGER = 2.0
DELAY = 0.002


class Conn:
    """A connection as CleanClose sees one; ``done`` is whether the client has closed."""

    _next = 100

    def __init__(self, done: bool = False) -> None:
        Conn._next += 1
        self.fd = Conn._next
        self.done = done
        self.closed = False

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        assert not self.closed, "closed twice"
        self.closed = True


class Watched:
    def __init__(self) -> None:
        self.fds: set[int] = set()

    def watch(self, fd: int, _handler: object) -> None:
        assert fd not in self.fds
        self.fds.add(fd)

    def unwatch(self, fd: int) -> None:
        self.fds.remove(fd)


def make(bound: int = 100) -> tuple[CleanClose, Watched]:
    watched = Watched()
    closer = CleanClose(LINGER, bound, watched.watch, watched.unwatch, is_done, delay=DELAY)
    return closer, watched


def is_done(conn: object) -> bool:
    return isinstance(conn, Conn) and conn.done


def test_a_client_that_closed_is_closed_after_the_delay_without_being_watched() -> None:
    closer, watched = make()
    conn = Conn(done=True)
    closer.answered(conn, 10.0)
    assert closer.tick(10.0) == pytest.approx(10.0 + DELAY)
    assert not conn.closed
    assert closer.tick(10.0 + DELAY) == float("inf")
    assert conn.closed and not watched.fds and len(closer) == 0


def test_a_client_still_reading_lingers_until_its_eof_or_the_deadline() -> None:
    closer, watched = make()
    early, late = Conn(), Conn()
    closer.answered(early, 10.0)
    closer.answered(late, 10.0)
    assert closer.tick(10.01) == pytest.approx(10.0 + LINGER)  # both watched now
    assert watched.fds == {early.fd, late.fd}
    early.done = True
    closer.readable(early.fd)
    assert early.closed and watched.fds == {late.fd}
    closer.readable(late.fd)  # input, but not the EOF: stays
    assert not late.closed
    closer.tick(10.0 + LINGER)
    assert late.closed and not watched.fds and len(closer) == 0


def test_at_the_bound_the_oldest_answered_is_closed_first() -> None:
    closer, _watched = make(bound=3)
    conns = [Conn() for _ in range(3)]
    for i, conn in enumerate(conns):
        closer.answered(conn, 10.0 + i)
        closer.tick(10.0 + i + DELAY)  # each lingers
    newest = Conn()
    closer.answered(newest, 13.0)
    assert [c.closed for c in conns] == [True, False, False]
    assert len(closer) == 3 and not newest.closed


def test_bookkeeping_is_bounded_by_the_bound_not_by_rate_times_linger() -> None:
    """Issue 11 defect 5: clients that close early must not leave an entry each until the
    deadline.  100,000 connections in one linger period, each closing soon after."""
    bound = 50
    closer, watched = make(bound=bound)
    now = 0.0
    most = 0
    for _ in range(100_000):
        conn = Conn()
        closer.answered(conn, now)
        now += 1e-5  # 100,000 a second: all within one linger period
        closer.tick(now + DELAY)  # watched: the client has not closed yet
        conn.done = True
        closer.readable(conn.fd)  # ...and now it has
        most = max(most, len(closer.deadlines) + len(closer.pending) + len(closer.lingering))
    assert most <= 2 * bound + 64 + 2, most
    assert not watched.fds


def test_shed_and_close_all_close_everything_once() -> None:
    closer, watched = make()
    lingering = [Conn() for _ in range(5)]
    for conn in lingering:
        closer.answered(conn, 0.0)
    closer.tick(1.0)
    pending = [Conn() for _ in range(5)]
    for conn in pending:
        closer.answered(conn, 1.0)
    assert closer.shed(3) == 3
    assert [c.closed for c in lingering] == [True] * 3 + [False] * 2
    closer.close_all()
    assert all(c.closed for c in lingering + pending)
    assert not watched.fds and len(closer) == 0 and not closer.deadlines


# --- finished(): what a real socket tells us ----------------------------------------------


def pair() -> tuple[socket.socket, socket.socket]:
    """(ours, the client's), ours non-blocking as the serving loop has it."""
    ours, client = socket.socketpair()
    ours.setblocking(False)
    return ours, client


def test_finished_at_the_clients_eof() -> None:
    ours, client = pair()
    client.close()
    assert finished(ours) is True
    ours.close()


def test_finished_discards_input_and_waits_for_the_eof() -> None:
    ours, client = pair()
    client.sendall(b"GET / HTTP/1.0\r\n\r\n")
    assert finished(ours) is False  # read and discarded; the client has not closed yet
    assert finished(ours) is False  # nothing new: still waiting
    client.sendall(b"more")
    client.close()
    assert finished(ours) is True  # its last input, then the EOF, in one call
    ours.close()


def test_finished_on_a_reset_connection() -> None:
    ours, client = pair()
    ours.sendall(b"x")
    client.close()  # closed with our byte unread: the kernel resets the connection
    with pytest.raises(ConnectionResetError):
        ours.recv(1, socket.MSG_PEEK)  # the premise
    ours2, client2 = pair()
    ours2.sendall(b"x")
    client2.close()
    assert finished(ours2) is True  # an error closes it too
    ours.close()
    ours2.close()


class Firehose:
    """A client that sends without end: every recv_into fills what it is asked to fill,
    with socket.recv_into's rules for ``nbytes`` (0: the whole buffer)."""

    def __init__(self) -> None:
        self.received = 0

    def recv_into(self, buffer: bytearray, nbytes: int = 0, flags: int = 0) -> int:
        if nbytes < 0:
            raise ValueError("negative buffersize in recv_into")
        count = len(buffer) if nbytes == 0 else min(nbytes, len(buffer))
        self.received += count
        return count


def test_finished_reads_one_mib_per_call_then_lets_the_others_run() -> None:
    client = Firehose()
    assert finished(client) is False  # type: ignore[arg-type]
    assert client.received == 1 << 20


# --- the stages, in order, and the time of the next look ----------------------------------


def test_len_counts_both_stages() -> None:
    closer, _watched = make()
    closer.answered(Conn(), 10.0)
    closer.tick(10.0 + 2 * DELAY)  # lingering now
    closer.answered(Conn(), 10.0 + 2 * DELAY)  # pending
    assert (len(closer.pending), len(closer.lingering)) == (1, 1)
    assert len(closer) == 2


@pytest.mark.parametrize("bound", [2, 300])
def test_at_the_bound_across_both_stages_exactly_one_is_shed(bound: int) -> None:
    closer, _watched = make(bound=bound)
    older = [Conn() for _ in range(bound - 1)]
    for conn in older:
        closer.answered(conn, 10.0)
    closer.tick(10.5)  # all lingering, their deadlines at 12.0
    pending = Conn()
    closer.answered(pending, 10.5)
    assert len(closer) == bound and not any(c.closed for c in [*older, pending])
    newest = Conn()
    closer.answered(newest, 10.6)  # one over: the oldest answered goes, only it
    assert [c.closed for c in [*older, pending, newest]] == [True] + [False] * bound
    assert len(closer) == bound


def test_the_default_delay_is_a_few_milliseconds() -> None:
    watched = Watched()
    closer = CleanClose(LINGER, 100, watched.watch, watched.unwatch, is_done)
    conn = Conn(done=True)
    closer.answered(conn, 10.0)
    assert 10.0 < closer.tick(10.0) <= 10.01  # not looked at at once...
    assert not conn.closed
    closer.tick(10.01)  # ...but soon
    assert conn.closed


def test_only_what_is_due_is_looked_at_oldest_first() -> None:
    closer, watched = make()
    first, second, third = Conn(done=True), Conn(done=True), Conn(done=True)
    closer.answered(first, 10.0)
    closer.answered(second, 10.0001)
    closer.answered(third, 10.003)
    # At 10.0025 the first two are due; the third is not (due at 10.005).
    assert closer.tick(10.0025) == pytest.approx(10.003 + DELAY)
    assert (first.closed, second.closed, third.closed) == (True, True, False)
    assert not watched.fds


def test_the_next_look_is_the_earliest_of_the_next_check_and_the_next_deadline() -> None:
    closer, _watched = make()
    a, b = Conn(), Conn()
    closer.answered(a, 10.0)
    closer.answered(b, 10.5)
    closer.tick(10.0 + DELAY)  # a lingers until 12.0
    assert closer.tick(10.5 + DELAY) == pytest.approx(12.0)  # b lingers until 12.5
    c = Conn()
    closer.answered(c, 11.0)
    assert closer.tick(11.0) == pytest.approx(11.0 + DELAY)  # c's check comes first
    d = Conn()
    closer.answered(d, 11.9995)
    assert closer.tick(11.9995) == pytest.approx(12.0)  # a's deadline comes first
    closer.tick(12.0)
    assert a.closed and not b.closed
    assert closer.tick(12.1) == pytest.approx(12.5)  # then b's; c and d until 13.0 and 14.0
    assert closer.tick(12.7) == pytest.approx(13.0)
    assert b.closed and not (c.closed or d.closed)


def test_a_delay_longer_than_a_second() -> None:
    watched = Watched()
    closer = CleanClose(LINGER, 100, watched.watch, watched.unwatch, is_done, delay=5.0)
    early, late = Conn(done=True), Conn(done=True)
    closer.answered(early, 100.0)
    closer.answered(late, 103.0)
    assert closer.tick(104.0) == pytest.approx(105.0)
    assert not early.closed
    assert closer.tick(105.5) == pytest.approx(108.0)
    assert early.closed and not late.closed


def test_deadlines_expire_at_any_later_tick_oldest_first() -> None:
    closer, watched = make()
    a, b = Conn(), Conn()
    closer.answered(a, 10.0)
    closer.answered(b, 11.0)
    closer.tick(11.0 + DELAY)  # both lingering: deadlines 12.0 and 13.0
    closer.tick(12.37)  # a late tick, not at the deadline itself
    assert a.closed and not b.closed and watched.fds == {b.fd}
    closer.tick(20.0)
    assert b.closed and not watched.fds


def test_shed_takes_pending_connections_when_none_linger() -> None:
    closer, _watched = make()
    conns = [Conn() for _ in range(4)]
    for conn in conns:
        closer.answered(conn, 10.0)
    assert closer.shed(2) == 2
    assert [c.closed for c in conns] == [True, True, False, False]
    assert closer.shed(5) == 2
    assert all(c.closed for c in conns) and len(closer) == 0
    assert closer.shed(1) == 0


# --- the deadline queue: stale entries are dropped, live ones kept ------------------------


def check(closer: CleanClose) -> None:
    """Stale entries may outnumber the live ones by 64 at most (closing.py's compaction)."""
    assert len(closer.deadlines) <= 2 * len(closer.lingering) + 64, (
        len(closer.deadlines),
        len(closer.lingering),
    )


def early_closers(closer: CleanClose, count: int, now: float) -> float:
    """``count`` clients, each answered, looked at while still reading, then closing."""
    for _ in range(count):
        conn = Conn()
        closer.answered(conn, now)
        now += 1e-5
        closer.tick(now + DELAY)
        check(closer)
        conn.done = True
        closer.readable(conn.fd)
    return now


def crowd_closes(closer: CleanClose, count: int) -> None:
    """``count`` clients linger, then all close at once: as many stale entries, none live."""
    crowd = [Conn() for _ in range(count)]
    for conn in crowd:
        closer.answered(conn, 0.0)
    closer.tick(0.01)
    check(closer)
    for conn in crowd:
        conn.done = True
        closer.readable(conn.fd)


def test_early_closers_leave_at_most_the_slack_behind() -> None:
    closer, watched = make(bound=1000)
    early_closers(closer, 500, 0.0)
    assert not watched.fds


def test_after_a_crowd_of_lingerers_closes_the_queue_is_compacted() -> None:
    closer, watched = make(bound=1000)
    crowd_closes(closer, 200)
    late = Conn(done=True)
    closer.answered(late, 0.01)
    closer.tick(0.02)  # a check with nothing left lingering
    assert late.closed
    check(closer)
    early_closers(closer, 300, 0.02)
    assert not watched.fds


def test_a_few_stale_entries_and_nothing_lingering() -> None:
    closer, _watched = make(bound=1000)
    crowd_closes(closer, 65)
    closer.answered(Conn(done=True), 0.01)
    closer.tick(0.02)
    check(closer)


def test_compaction_keeps_the_deadlines_of_those_still_lingering() -> None:
    closer, watched = make(bound=1000)
    held = [Conn() for _ in range(300)]  # clients that never close
    for conn in held:
        closer.answered(conn, 0.0)
    closer.tick(0.01)
    now = early_closers(closer, 1000, 0.01)  # compacted several times meanwhile
    assert now < LINGER and not any(c.closed for c in held)
    closer.tick(LINGER)  # their deadline: every one is closed, none is left behind
    assert all(c.closed for c in held)
    assert not watched.fds and len(closer) == 0


def test_importing_it_loads_no_typing(lean_import: Callable[..., None]) -> None:
    """closing.py is in the fork parent, whose memory every fork copies (bench/ output,
    "Fork cost"): its Conn protocol is for mypy only."""
    lean_import("daytime_sd.closing", frozenset({"typing"}))
