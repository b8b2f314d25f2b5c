"""Fork mode: a child per connection, reaped by the loop, at most ``limit`` at once.

The child sends the line with the FIN and exits at once; the parent keeps its copy of the
connection for the clean close.  So a child lives only as long as a send takes, whatever
the client does, and clients that never read or never close cannot hold ``limit``
processes hostage for the linger time.

No SIGCHLD handler: a signal per child costs more than the child.  While there are
children the loop wakes at least every REAP_EVERY seconds and reaps them, so none stays a
zombie for long.
"""

from __future__ import annotations

import _socket
import os
import time

from daytime_sd import log

FOREVER = float("inf")
REAP_EVERY = 0.005


class Children:
    def __init__(self, limit: int, own_fds_end: int) -> None:
        self.limit = limit
        self.pids: set[int] = set()
        # The child closes our descriptors from 3 up to here (the listeners, the datagram
        # sockets and the epoll set) and nothing else; see spawn().
        self.own_fds_end = own_fds_end
        self.fork_failed_at = -1e9

    def room(self) -> int:
        return self.limit - len(self.pids)

    def spawn(self, conn: _socket.socket, line: bytes) -> bool:
        """Hand ``conn`` to a child; False when fork failed and the caller must answer it.

        The child's code is kept to these few lines on purpose: every page it writes is a
        copy-on-write fault, and in CPython every object it touches is a write (reference
        counts), so a method call or closing every inherited descriptor shows in the fork
        rate (bench/pyfork.py is the floor to compare with).  Other clients' copies go with
        _exit at once.  The signal wake-up pipe stays open: a signal arriving meanwhile
        writes a byte to it, which the parent reads and ignores (closed, the write would
        fail and CPython would report that on stderr).
        """
        fd, end = conn.fileno(), self.own_fds_end
        below = fd if fd < end else end  # worked out here, not in the child
        try:
            pid = os.fork()
        except OSError as err:
            now = time.monotonic()
            if now - self.fork_failed_at > 10:
                log.error(f"fork failed: {err.strerror}; answering in-process meanwhile")
            self.fork_failed_at = now
            return False
        if pid == 0:  # the child
            try:
                os.closerange(3, below)
                if below != end:  # the client's fd filled a hole below ours
                    os.closerange(fd + 1, end)
                conn.send(line, _socket.MSG_DONTWAIT | _socket.MSG_MORE)
                conn.shutdown(_socket.SHUT_WR)
            finally:
                os._exit(0)  # also when the client reset: nothing to report, nobody to tell
        self.pids.add(pid)
        return True

    def reap(self) -> None:
        pids = self.pids
        while pids:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pids.clear()
                return
            if pid == 0:
                return
            pids.discard(pid)

    def tick(self, now: float) -> float:
        if not self.pids:
            return FOREVER
        self.reap()
        return now + REAP_EVERY if self.pids else FOREVER
