# SPDX-License-Identifier: MIT
"""Accepting TCP connections: how many, which errors mean what, and whether to accept now.

One rule decides whether we accept (``room``): not while stopping, not while paused after
running out of descriptors, and in fork mode not beyond the children's limit.  The rule
is asked before every batch, so two listeners reported in one poll round cannot together
pass the limit, and the loop's timer keeps the listeners in the epoll set exactly while
the rule allows: clients beyond it wait in the kernel's accept queue, they are not refused.

Each accepted connection gets its line and our FIN in one segment (MSG_MORE holds the
line for the FIN), from a child in fork mode, and goes to the clean close.
"""

from __future__ import annotations

import _socket
import errno
import socket
import sys
import time
from collections.abc import Sequence

from daytime_sd import log
from daytime_sd.answer import Connection, answer_now
from daytime_sd.children import Children
from daytime_sd.closing import CleanClose
from daytime_sd.loop import FOREVER, Loop
from daytime_sd.netaddr import format_endpoint, split
from daytime_sd.protocol import LineCache

BATCH = 64  # accepts per listener per wake-up: a burst on one port cannot starve the others
DRAIN_MAX = 65536  # connections answered at most per listener when stopping (a queue's most)
PAUSE = 0.1  # seconds without accepting after EMFILE (or an unknown error) with nothing to free
# accept(2) errors that mean "this one connection failed", not "the listener is broken"
# (accept(2), "Error handling": Linux passes pending network errors on to accept).
TRANSIENT = frozenset({
    errno.ECONNABORTED, errno.EPROTO, errno.ENOPROTOOPT, errno.EHOSTDOWN, errno.ENONET,
    errno.EHOSTUNREACH, errno.EOPNOTSUPP, errno.ENETUNREACH, errno.ENETDOWN, errno.EPERM,
})  # fmt: skip
RESOURCE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
TCP_INFO = getattr(socket, "TCP_INFO", 11)  # Linux's value: not exported by every CPython


class Acceptor:
    def __init__(
        self,
        loop: Loop,
        listeners: Sequence[socket.socket],
        cache: LineCache,
        closer: CleanClose,
        children: Children | None,  # None: answer in-process
        log_connections: bool,
    ) -> None:
        self.loop = loop
        self.listeners = {sock.fileno(): sock for sock in listeners}
        self.families = {fd: sock.family for fd, sock in self.listeners.items()}
        self.unqueried: set[int] = set()  # listeners TCP_INFO cannot tell the queue of
        self.cache = cache
        self.closer = closer
        self.children = children
        self.log_connections = log_connections
        self.listening = False
        self.skipped = -1  # a readable listener the rule gave no room to (see tick)
        self.stopping = False
        self.paused_until = 0.0
        self.out_of_fds = False
        self.shortage_logged = False  # this shortage was reported (later ones within a minute not)
        self.shortage_logged_at = -1e9
        self.error_logged_at = -1e9
        self.served = 0
        self.last_activity = time.monotonic()
        for sock in listeners:
            sock.setblocking(False)

    # -- the rule -------------------------------------------------------------------------

    def room(self, now: float) -> int:
        """How many connections we may accept now: the one rule."""
        if self.stopping or now < self.paused_until:
            return 0
        if self.children is not None:
            return self.children.room()
        return BATCH

    def tick(self, now: float) -> float:
        """Keep the listeners in the epoll set exactly while ``room`` allows accepting."""
        if self.listening and self.children is None and not (self.paused_until or self.stopping):
            return FOREVER  # in-process and accepting: nothing the rule could change
        if self.paused_until and now >= self.paused_until:
            self.paused_until = 0.0
        want = self.room(now) > 0
        if want != self.listening and self.listeners:
            order = list(self.listeners)
            if want and self.skipped in self.listeners:
                # epoll reports ready descriptors in the order they were registered: the
                # listener that found no room last time goes first, or with room for one
                # connection at a time (fork mode at --max-children) the first listener
                # would take every turn and the second would starve.
                order.remove(self.skipped)
                order.insert(0, self.skipped)
                self.skipped = -1
            for fd in order:
                if want:
                    self.loop.add(fd, self.on_readable)
                else:
                    self.loop.remove(fd)
            self.listening = want
        return self.paused_until or FOREVER

    # -- accepting ------------------------------------------------------------------------

    def queued(self, fd: int, cap: int = BATCH) -> int:
        """How many connections wait in the accept queue, at most ``cap``; ``cap`` where we
        cannot ask.

        A failing accept(2) costs as much as a successful one (Linux allocates the socket
        and its file before it looks at the queue), and "accept until EAGAIN" pays that
        once per wake-up.  For a TCP listener TCP_INFO's tcpi_unacked is the accept queue's
        length, so we accept exactly that many.  Other stream sockets (a systemd
        ListenStream= path) fall back to trying.
        """
        if fd in self.unqueried:
            return cap
        try:
            info = self.listeners[fd].getsockopt(socket.IPPROTO_TCP, TCP_INFO, 32)
        except OSError:
            self.unqueried.add(fd)
            return cap
        return min(int.from_bytes(info[24:28], sys.byteorder), cap)

    def on_readable(self, fd: int) -> None:
        now = time.monotonic()
        room = self.room(now)
        if room > 0:
            self.accept(fd, min(self.queued(fd) or 1, room), now)
        elif self.skipped < 0:
            self.skipped = fd

    def accept(self, fd: int, count: int, now: float) -> int:
        """Accept and answer up to ``count``; how many were taken off the queue, -1 at its end.

        At least one is tried even when the queue reads empty: a level-triggered epoll
        would otherwise go on waking us for a readable listener, forever.
        """
        listener = self.listeners[fd]
        family = self.families[fd]
        line = self.cache.line(time.time())
        self.last_activity = now
        answered = self.closer.answered
        # Fork mode collects the batch and forks it in one go (Children.spawn says why).
        forks: list[Connection] | None = [] if self.children is not None else None
        taken = 0
        result: int  # taken, or -1 at the queue's end (see above)
        for _ in range(count or 1):
            try:
                # The hot path's private names, here only: socket.accept() is _accept() with
                # a Python socket object around it, and the C type alone is what we need
                # (bench/ output, "Hot path: private names"; test_private_api checks shapes).
                conn_fd, addr = listener._accept()  # type: ignore[attr-defined]
            except BlockingIOError:
                result = taken or -1
                break
            except OSError as err:
                if err.errno in TRANSIENT:
                    continue
                self._failed(err, now)
                result = -1
                break
            taken += 1
            if self.out_of_fds:
                self._fds_again()
            if self.log_connections:
                self._log(addr)
            conn = _socket.socket(family, _socket.SOCK_STREAM, 0, conn_fd)
            if forks is not None:
                forks.append(conn)
                continue
            if answer_now(conn, line):
                answered(conn, now)
        else:
            result = taken
        if forks:
            self._fork(forks, line, now)
        self.served += taken
        return result

    def _fork(self, conns: list[Connection], line: bytes, now: float) -> None:
        """A child for each of ``conns``; those fork failed for are answered here."""
        assert self.children is not None
        forked = self.children.spawn(conns, line)
        answered = self.closer.answered
        for i, conn in enumerate(conns):
            if i < forked or answer_now(conn, line):
                answered(conn, now)

    def _fds_again(self) -> None:
        self.out_of_fds = False
        if self.shortage_logged:
            self.shortage_logged = False
            log.info("descriptors available again; accepting connections")

    @staticmethod
    def _log(addr: object) -> None:
        host, port = split(addr)
        log.info(f"connection from {format_endpoint(addr)}", remote_addr=host, remote_port=port)

    def _failed(self, err: OSError, now: float) -> None:
        """Out of descriptors (or an error accept(2) does not document): never a busy loop.

        EMFILE and friends first close the oldest lingering connections; with nothing to
        free, and for an unknown errno, the listeners leave the epoll set for PAUSE.  Each
        kind of trouble is logged once per episode, and at most once a minute.
        """
        if err.errno in RESOURCE:
            if not self.out_of_fds:
                self.out_of_fds = True
                self.shortage_logged = now - self.shortage_logged_at >= 60
                if self.shortage_logged:
                    self.shortage_logged_at = now
                    log.warning(
                        f"accept failed: {err.strerror}; pausing new connections until "
                        f"descriptors are free (open: {len(self.closer)} lingering, "
                        f"{len(self.children.pids) if self.children else 0} children)"
                    )
            if self.closer.shed(16):
                return
        elif now - self.error_logged_at >= 60:
            self.error_logged_at = now
            log.error(f"accept failed: {err.strerror}; pausing new connections for {PAUSE:g} s")
        self.paused_until = now + PAUSE
        self.tick(now)

    def drain(self, until: float) -> int:
        """Answer, in-process, what is queued now, until the queues are empty or ``until``.

        Used when stopping: a connection already in the queue when the last process closes
        the listener would be reset.  Bounded in time, and in count by what was queued when
        we began, so a flood cannot keep us from stopping.
        """
        saved, self.children = self.children, None  # in-process: no child to wait for
        answered = 0
        try:
            for fd in self.listeners:
                budget = self.queued(fd, DRAIN_MAX)
                while budget > 0 and time.monotonic() < until:
                    now = time.monotonic()
                    taken = self.accept(fd, min(budget, BATCH), now)
                    if taken < 0:
                        break
                    answered += taken
                    budget -= max(taken, 1)
                    self.closer.tick(now)  # free descriptors as we go
        finally:
            self.children = saved
        return answered

    def close(self) -> None:
        for fd, sock in self.listeners.items():
            if self.listening:
                self.loop.remove(fd)
            sock.close()
        self.listening = False
        self.listeners.clear()
