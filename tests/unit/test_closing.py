"""The clean close (closing.CleanClose) as bookkeeping: time passed in, no kernel."""

from __future__ import annotations

import pytest

from daytime_sd.closing import CleanClose

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
