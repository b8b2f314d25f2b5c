# SPDX-License-Identifier: MIT
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

import os
import time

from daytime_sd import log
from daytime_sd.answer import Connection, answer_now
from daytime_sd.loop import FOREVER

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

    def spawn(self, conns: list[Connection], line: bytes) -> int:
        """Fork a child for each of ``conns`` in turn; how many were handed over.  When fork
        fails the rest are the caller's to answer.

        The child closes our descriptors (the listeners, the datagram sockets, the epoll
        set), sends the line with its FIN and exits; nothing else runs in it.  The signal
        wake-up pipe stays open there: a signal arriving meanwhile writes a byte to it,
        which the parent reads and ignores.  The parent forks the whole batch in one loop
        and does its bookkeeping after it: every page it writes while a child lives is
        copied (bench/ output, "Counts": the fork parent's page faults per connection).
        """
        end = self.own_fds_end
        forked = 0
        for conn in conns:
            try:
                pid = os.fork()
            except OSError as err:
                self._failed(err)
                break
            if pid == 0:  # the child
                try:
                    fd = conn.fileno()
                    below = fd if fd < end else end
                    os.closerange(3, below)
                    if below != end:  # the client's fd filled a hole below ours
                        os.closerange(fd + 1, end)
                    # answer.py's int flags: socket.MSG_* are IntFlag members, and or-ing
                    # them runs enum's Python code in every child (bench/ fork cells).
                    answer_now(conn, line)
                finally:
                    os._exit(0)  # also when the client reset: nothing to report, nobody to tell
            self.pids.add(pid)
            forked += 1
        return forked

    def _failed(self, err: OSError) -> None:
        now = time.monotonic()
        if now - self.fork_failed_at > 10:
            log.error(f"fork failed: {err.strerror}; answering in-process meanwhile")
        self.fork_failed_at = now

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
