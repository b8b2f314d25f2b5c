# SPDX-License-Identifier: MIT
"""The clean close of answered connections: answered → lingering → closed, bounded.

Closing a socket with unread client input makes Linux send RST instead of FIN, and a client
that wrote before reading would lose its line to ECONNRESET (answer.py has the long story).
So after the line and our FIN, a connection is kept until the client closes, or for at most
``linger`` seconds, reading and discarding what it sends.

Two stages keep that cheap.  An answered connection first waits ``delay`` in a queue: looked
at at once, nearly every client is still reading its line, and each would cost a failed
recv, an epoll registration and one more wake-up.  After the delay most clients have
closed, and are closed with one recv.  The rest join the loop and linger.  Every structure
is bounded by ``bound`` together: at the bound the oldest answered connection is closed
first (it has had its line longest).

Pure bookkeeping: the connections are anything with ``fileno()`` and ``close()``, and
``finished``, ``watch`` and ``unwatch`` are given, so it is tested without a kernel.
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Callable

from daytime_sd.answer import Connection
from daytime_sd.loop import FOREVER

# The fork parent: every fork copies typing's memory (bench/ output, "Fork cost").
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class Conn(Protocol):
        """What the bookkeeping needs of a connection (a socket, or a stand-in in tests)."""

        def fileno(self) -> int: ...
        def close(self) -> None: ...


CHECK_AFTER = 0.002  # seconds an answered connection waits before we look whether it closed
_BUF = bytearray(65536)
_DONTWAIT = socket.MSG_DONTWAIT


def finished(conn: Connection) -> bool:
    """Discard client input; True at EOF or error, when the connection can be closed."""
    try:
        if not conn.recv_into(_BUF, 0, _DONTWAIT):  # nearly always: the client has closed
            return True
        for _ in range(15):  # up to 1 MiB per wake-up, then let the others run
            if not conn.recv_into(_BUF, 0, _DONTWAIT):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True
    return False


class CleanClose:
    def __init__(
        self,
        linger: float,
        bound: int,
        watch: Callable[[int, Callable[[int], None]], None],
        unwatch: Callable[[int], None],
        is_finished: Callable[[Conn], bool] = finished,  # type: ignore[assignment]
        delay: float = CHECK_AFTER,
    ) -> None:
        self.linger = linger
        self.bound = bound
        self.delay = delay
        self._watch = watch
        self._unwatch = unwatch
        self._finished = is_finished
        self.pending: deque[tuple[float, Conn]] = deque()  # (answered at, conn), oldest first
        self.lingering: dict[int, Conn] = {}  # fd → conn, watched until the client's EOF
        # (deadline, fd, conn), oldest first.  An entry whose client closed early stays until
        # it reaches the front or the queue is compacted, which happens when stale entries
        # outnumber live ones: the queue never holds more than twice ``bound``.
        self.deadlines: deque[tuple[float, int, Conn]] = deque()

    def __len__(self) -> int:
        return len(self.pending) + len(self.lingering)

    def answered(self, conn: Conn, now: float) -> None:
        """``conn`` has its line and our FIN: close it cleanly, in time."""
        if len(self.pending) + len(self.lingering) >= self.bound:
            self.shed(1)
        self.pending.append((now, conn))

    def tick(self, now: float) -> float:
        """Look at what is due; return when to look again."""
        pending = self.pending
        if pending and pending[0][0] <= now - self.delay:
            self._check_pending(now - self.delay)
        deadlines = self.deadlines
        if deadlines and deadlines[0][0] <= now:
            self._expire(now)
        wake = FOREVER
        if pending:
            wake = pending[0][0] + self.delay
        if deadlines and deadlines[0][0] < wake:
            wake = deadlines[0][0]
        return wake

    def _check_pending(self, until: float) -> None:
        pending = self.pending
        lingering = self.lingering
        is_finished = self._finished
        while pending and pending[0][0] <= until:
            answered, conn = pending.popleft()
            if is_finished(conn):
                conn.close()
                continue
            fd = conn.fileno()
            self._watch(fd, self.readable)
            lingering[fd] = conn
            self.deadlines.append((answered + self.linger, fd, conn))
        if len(self.deadlines) > 2 * len(lingering) + 64:
            self.deadlines = deque(e for e in self.deadlines if lingering.get(e[1]) is e[2])

    def readable(self, fd: int) -> None:
        """The client sent something or closed."""
        conn = self.lingering.get(fd)
        if conn is not None and self._finished(conn):
            self._close(fd, conn)

    def _close(self, fd: int, conn: Conn) -> None:
        del self.lingering[fd]
        self._unwatch(fd)
        conn.close()

    def _expire(self, now: float) -> None:
        deadlines = self.deadlines
        while deadlines and deadlines[0][0] <= now:
            _deadline, fd, conn = deadlines.popleft()
            if self.lingering.get(fd) is conn:
                self._close(fd, conn)

    def shed(self, count: int) -> int:
        """Close up to ``count`` of the oldest answered connections; how many were closed."""
        shed = 0
        deadlines = self.deadlines
        while shed < count and deadlines:
            _deadline, fd, conn = deadlines.popleft()
            if self.lingering.get(fd) is conn:
                self._close(fd, conn)
                shed += 1
        while shed < count and self.pending:
            self.pending.popleft()[1].close()
            shed += 1
        return shed

    def close_all(self) -> None:
        while self.pending:
            self.pending.popleft()[1].close()
        for fd, conn in list(self.lingering.items()):
            self._close(fd, conn)
        self.deadlines.clear()
