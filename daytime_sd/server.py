"""The serving loop: accept, answer in-process or fork, linger, reap, signals, UDP.

One epoll set holds the listeners, the datagram sockets, the lingering connections and a
signal wake-up pipe, so nothing a client does can block another.  Signal handlers only set
flags; the loop acts on them (PEP 475 retries the interrupted syscalls for us).  Children
are reaped by the loop, not on SIGCHLD (see install_signals).

In-process mode: the line is sent on accept and our side shut down in the same segment.
The connection is looked at again CHECK_AFTER later; by then almost every client has read
its line and closed, and we close too.  The few that have not join the epoll set and
linger until the client closes or the linger bound runs out (see answer.py for why).
Fork mode: a child answers each connection; at ``max_children`` the listeners leave the
epoll set, so further clients wait in the kernel backlog instead of being refused.
"""

from __future__ import annotations

import _socket
import errno
import os
import resource
import select
import sys
import time

from daytime_sd import log
from daytime_sd.config import Config
from daytime_sd.netaddr import format_endpoint, split
from daytime_sd.notify import Notifier
from daytime_sd.protocol import LineCache
from daytime_sd.udp import DatagramResponder

# _signal and _collections at run time, not signal and collections: those add enum,
# functools and friends (0.9 MB here), which every forked child copies and the fork rate
# pays for.  The public modules are the same objects for the type checker.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
    from collections import deque
    from collections.abc import Callable, Sequence
else:
    import _signal
    from _collections import deque

IN = select.EPOLLIN
ACCEPT_BATCH = 64  # accepts per listener per wake-up: a burst on one port cannot starve others
# How long an answered connection waits before we look whether the client closed.  Looking
# at once finds nearly every client still reading (measured: 58% at 27,000 connections/s),
# and each of those then costs a recv that fails, an epoll_ctl and one more wake-up.
CHECK_AFTER = 0.002
# accept(2) errors that mean "this one connection failed", not "the listener is broken".
_TRANSIENT = frozenset(
    {
        errno.ECONNABORTED,
        errno.EPROTO,
        errno.ENOPROTOOPT,
        errno.EHOSTDOWN,
        errno.ENONET,
        errno.EHOSTUNREACH,
        errno.EOPNOTSUPP,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EPERM,
    }
)
_RESOURCE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_STOP_SIGNALS: dict[int, str] = {_signal.SIGTERM: "SIGTERM", _signal.SIGINT: "SIGINT"}
_TCP_INFO = getattr(_socket, "TCP_INFO", 11)


def _fd_from(fd: int, lowest: int) -> int:
    """``fd``, moved to ``lowest`` or above if it lies below (it filled a hole there)."""
    if fd >= lowest:
        return fd
    import fcntl  # only then

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest)
    os.close(fd)
    return moved


def _max_lingering() -> int:
    """Lingering connections hold one fd each; a quarter of the fd limit stays for the rest."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 65536
    return max(16, min(16384, soft * 3 // 4 - 16))


class Server:
    def __init__(
        self,
        config: Config,
        listeners: Sequence[_socket.socket],
        datagrams: Sequence[_socket.socket],
        fork: bool,
        activated: bool,
        notifier: Notifier,
    ) -> None:
        self.config = config
        self.fork = fork
        self.activated = activated
        self.notifier = notifier
        self.cache = LineCache(config.format, config.utc)
        self.linger = config.linger
        self.log_connections = config.log_connections
        self.listeners = {sock.fileno(): sock for sock in listeners}
        self.unqueried: set[int] = set()  # listeners TCP_INFO cannot tell the queue of
        self.families = {fd: sock.family for fd, sock in self.listeners.items()}
        self.udp = DatagramResponder(datagrams, self.cache, config.udp_rate)
        self.ep = select.epoll()
        self.pending: deque[tuple[float, _socket.socket]] = deque()  # (answered at, conn)
        self.lingering: dict[int, _socket.socket] = {}  # in the epoll set until the client's EOF
        self.deadlines: deque[tuple[float, int, _socket.socket]] = deque()  # of the lingering
        self.max_lingering = _max_lingering()
        self.children: set[int] = set()
        self.max_children = config.max_children
        self.listening = False
        self.paused_until = 0.0  # after EMFILE: when to try accept(2) again
        self.out_of_fds = False
        self.emfile_logged = False  # this shortage was reported (later ones within a minute not)
        self.emfile_logged_at = -1e9
        self.fork_failed_at = -1e9
        self.served = 0
        self.now = time.monotonic()  # of the current accept batch
        self.stop_reason = ""
        self.signals: list[int] = []
        self.buf = bytearray(65536)
        self.last_activity = time.monotonic()
        # A forked child closes the listeners, datagram sockets and epoll, all of fd 3 up
        # to own_fds_end, but not the wake-up pipe (see _fork), so the pipe goes above them.
        own = [self.ep.fileno(), *(s.fileno() for s in [*listeners, *datagrams])]
        self.own_fds_end = max(own) + 1
        pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wake_r, self.wake_w = (_fd_from(fd, self.own_fds_end) for fd in pipe)
        for sock in [*listeners, *datagrams]:
            sock.setblocking(False)
        self.handlers: dict[int, Callable[[int], None]] = {self.wake_r: self._on_wake}
        self.ep.register(self.wake_r, IN)
        for sock in datagrams:
            self.handlers[sock.fileno()] = self._on_datagram
            self.ep.register(sock.fileno(), IN)
        self._listen(True)

    # -- addresses and status ------------------------------------------------------------

    def describe(self) -> str:
        parts = [f"tcp {format_endpoint(s.getsockname())}" for s in self.listeners.values()]
        parts += [f"udp {format_endpoint(s.getsockname())}" for s in self.udp.sockets]
        mode = "fork per connection" if self.fork else "in-process"
        return f"{', '.join(parts) or 'no sockets'} ({mode})"

    def status_line(self) -> str:
        busy = f", {len(self.children)} children" if self.fork else ""
        return (
            f"Serving {self.describe()}; {self.served} TCP connections and "
            f"{self.udp.answered} datagrams answered{busy}"
        )

    # -- the loop ---------------------------------------------------------------------------

    def install_signals(self) -> None:
        _signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for signum in (*_STOP_SIGNALS, _signal.SIGHUP):
            _signal.signal(signum, self._on_signal)
        # No SIGCHLD handler: a signal per child costs more than the child.  Children live
        # for microseconds; the loop reaps them every round while there are any, and polls
        # with a short timeout meanwhile, so none stays a zombie for long.

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signals.append(signum)

    def run(self) -> int:
        self.install_signals()
        self.notifier.ready(self.status_line())
        log.info(f"serving {self.describe()}")
        watchdog = self.notifier.watchdog_interval
        next_watchdog = time.monotonic() + watchdog if watchdog else float("inf")
        if watchdog:
            self.notifier.watchdog()
        idle = self.config.idle_timeout if self.activated else 0.0
        next_status = time.monotonic() + 1.0  # STATUS= at most once a second
        poll = self.ep.poll
        handlers = self.handlers
        lingering = self.lingering
        pending = self.pending
        while not self.stop_reason:
            now = time.monotonic()
            wake = min(next_watchdog, next_status)
            if pending:
                wake = min(wake, pending[0][0] + CHECK_AFTER)
            if self.deadlines:
                wake = min(wake, self.deadlines[0][0])
            if self.paused_until:
                wake = min(wake, self.paused_until)
            if idle:
                wake = min(wake, self.last_activity + idle)
            timeout = max(0.0, wake - now) + 0.001
            if self.children:
                timeout = min(timeout, 0.005)
            for fd, _events in poll(timeout, 256):
                if fd in lingering:
                    self._on_lingering(fd)
                else:
                    handler = handlers.get(fd)
                    if handler is not None:
                        handler(fd)
            now = time.monotonic()
            if pending and pending[0][0] <= now - CHECK_AFTER:
                self._check_pending(now - CHECK_AFTER)
            if self.children:
                self._reap()
            if self.signals:
                self._handle_signals()
            if self.deadlines and self.deadlines[0][0] <= now:
                self._expire(now)
            if self.paused_until and now >= self.paused_until:
                self.paused_until = 0.0
                self._listen(True)
            if now >= next_watchdog:
                self.notifier.watchdog()
                next_watchdog = now + (watchdog or 0)
            if now >= next_status:
                self.notifier.status(self.status_line())
                next_status = now + 1.0
            if idle and now - self.last_activity >= idle and self._idle():
                self.stop_reason = f"idle for {idle:g} s"
        return self._shutdown()

    def _idle(self) -> bool:
        """Nothing in flight and nothing waiting: safe to exit and let systemd restart us."""
        if self.pending or self.lingering or self.children:
            return False
        before = self.served
        self._drain_backlog()
        return self.served == before

    def _on_datagram(self, fd: int) -> None:
        self.last_activity = time.monotonic()  # UDP traffic keeps an idle timeout away too
        self.udp.on_readable(fd)

    # -- TCP ----------------------------------------------------------------------------------

    def _listen(self, on: bool) -> None:
        if on == self.listening or not self.listeners:
            return
        for fd in self.listeners:
            if on:
                self.ep.register(fd, IN)
                self.handlers[fd] = self._on_listener
            else:
                self.ep.unregister(fd)
        self.listening = on

    def _on_listener(self, fd: int) -> None:
        self._accept_batch(fd)

    def _queued(self, fd: int) -> int:
        """How many connections wait in the accept queue; ACCEPT_BATCH where we cannot ask.

        A failing accept(2) costs as much as a successful one (Linux allocates the socket
        and its file before it looks at the queue: about 4 µs here), and "accept until
        EAGAIN" pays that once per wake-up, which under load is every few connections.
        For a TCP listener TCP_INFO's tcpi_unacked is the accept queue's length, so we
        accept exactly that many.  Other stream sockets (a systemd ListenStream= path)
        fall back to trying.
        """
        if fd in self.unqueried:
            return ACCEPT_BATCH
        try:
            info = self.listeners[fd].getsockopt(_socket.IPPROTO_TCP, _TCP_INFO, 32)
        except OSError:
            self.unqueried.add(fd)
            return ACCEPT_BATCH
        return min(int.from_bytes(info[24:28], sys.byteorder), ACCEPT_BATCH)

    def _accept_batch(self, fd: int) -> bool:
        """Accept what is queued, at most ACCEPT_BATCH; True if the queue may hold more."""
        listener = self.listeners[fd]
        family = self.families[fd]
        line = self.cache.line(time.time())
        self.last_activity = self.now = time.monotonic()
        # At least one: should the count ever read 0 on a readable listener, a level-
        # triggered epoll would otherwise wake us for nothing, forever.
        for _ in range(self._queued(fd) or 1):
            try:
                conn_fd, addr = listener._accept()  # type: ignore[attr-defined]  # no object per conn
            except BlockingIOError:
                return False
            except OSError as err:
                if err.errno in _RESOURCE:
                    self._out_of_resources(err)
                    return False
                if err.errno not in _TRANSIENT:
                    log.error(f"accept failed: {err.strerror}")
                continue
            if self.out_of_fds:
                self.out_of_fds = False
                if self.emfile_logged:
                    log.info("descriptors available again; accepting connections")
            self.served += 1
            if self.log_connections:
                host, port = split(addr)
                log.info(
                    f"connection from {format_endpoint(addr)}", remote_addr=host, remote_port=port
                )
            conn = _socket.socket(family, _socket.SOCK_STREAM, 0, conn_fd)
            if self.fork and self._fork(conn, line):
                if len(self.children) >= self.max_children:
                    self._listen(False)  # the rest wait in the backlog, not refused
                    return False
                continue
            self._answer(conn, line)
        return True

    def _answer(self, conn: _socket.socket, line: bytes) -> None:
        """Send and half-close in one segment (MSG_MORE holds the line for the FIN)."""
        try:
            # A fresh socket buffer takes a line at once, so this never blocks.
            conn.send(line, _socket.MSG_DONTWAIT | _socket.MSG_MORE)
            conn.shutdown(_socket.SHUT_WR)
        except OSError:
            conn.close()
            return
        self._linger(conn)

    def _linger(self, conn: _socket.socket) -> None:
        """Keep an answered connection until the client closes or the linger bound runs out."""
        if len(self.pending) + len(self.lingering) >= self.max_lingering:
            self._shed(1)
        self.pending.append((self.now, conn))

    def _check_pending(self, until: float) -> None:
        """Close the connections answered by ``until`` whose client closed; watch the rest."""
        pending = self.pending
        while pending and pending[0][0] <= until:
            answered, conn = pending.popleft()
            if self._finished(conn):
                conn.close()
                continue
            fd = conn.fileno()
            self.ep.register(fd, IN | select.EPOLLRDHUP)
            self.lingering[fd] = conn
            self.deadlines.append((answered + self.linger, fd, conn))

    def _on_lingering(self, fd: int) -> None:
        conn = self.lingering.get(fd)
        if conn is not None and self._finished(conn):
            self._close(fd, conn)

    def _finished(self, conn: _socket.socket) -> bool:
        """Discard client input; True at EOF or error, when the connection can be closed."""
        try:
            for _ in range(16):  # up to 1 MiB per wake-up, then let the others run
                if not conn.recv_into(self.buf, 0, _socket.MSG_DONTWAIT):
                    return True
        except BlockingIOError:
            return False
        except OSError:
            return True
        return False

    def _close(self, fd: int, conn: _socket.socket) -> None:
        """Close a lingering connection."""
        del self.lingering[fd]
        if self.children:  # a child may still hold a copy: epoll would keep reporting it
            self.ep.unregister(fd)
        conn.close()

    def _expire(self, now: float) -> None:
        deadlines = self.deadlines
        while deadlines and deadlines[0][0] <= now:
            _deadline, fd, conn = deadlines.popleft()
            if self.lingering.get(fd) is conn:
                self._close(fd, conn)

    def _shed(self, count: int) -> int:
        """Close the oldest answered connections; they have had their line already."""
        shed = 0
        while shed < count and self.deadlines:
            _deadline, fd, conn = self.deadlines.popleft()
            if self.lingering.get(fd) is conn:
                self._close(fd, conn)
                shed += 1
        while shed < count and self.pending:
            self.pending.popleft()[1].close()
            shed += 1
        return shed

    def _out_of_resources(self, err: OSError) -> None:
        """EMFILE and friends: free what we can, else stop accepting briefly (no busy loop)."""
        if not self.out_of_fds:
            self.out_of_fds = True
            now = time.monotonic()
            # Once per shortage, and at most once a minute however often descriptors run out.
            self.emfile_logged = now - self.emfile_logged_at >= 60
            if self.emfile_logged:
                self.emfile_logged_at = now
                log.warning(
                    f"accept failed: {err.strerror}; pausing new connections until "
                    f"descriptors are free (open: {len(self.pending) + len(self.lingering)} "
                    f"lingering, "
                    f"{len(self.children)} children)"
                )
        if self._shed(16):
            return
        self._listen(False)
        self.paused_until = time.monotonic() + 0.1

    def _fork(self, conn: _socket.socket, line: bytes) -> bool:
        """Hand ``conn`` to a child; False when fork failed and the caller must answer it.

        The child sends the line with the FIN, as _answer does, and exits at once; the
        parent keeps its copy and does the lingering.  So a child lives for microseconds
        whatever the client does, and clients that never read or never close cannot hold
        ``max_children`` processes hostage for the linger time.

        The child's code is kept to these few lines on purpose.  Every page it writes is a
        copy-on-write fault, and in CPython every object it touches is a write (reference
        counts): a method call, closing every inherited descriptor and resetting the signal
        wake-up fd cost 34 faults more per child (120 against 86, measured with perf), about
        a fifth of the fork rate.  So the child closes the listeners and the epoll set (all
        below ``own_fds_end``: 4 faults) and nothing else; other clients' copies go with
        _exit microseconds later.  The wake-up pipe stays open: a signal arriving meanwhile
        writes a byte to it, which the parent reads and ignores (closed, the write would
        fail and CPython would report that on stderr).
        """
        fd, end = conn.fileno(), self.own_fds_end
        below = fd if fd < end else end  # worked out here: a min() in the child costs 10 faults
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
        self.children.add(pid)
        self._linger(conn)
        return True

    def _reap(self) -> None:
        while self.children:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                break
            if pid == 0:
                break
            self.children.discard(pid)
        if (
            len(self.children) < self.max_children
            and not self.paused_until
            and not self.stop_reason
        ):
            self._listen(True)

    def _drain_backlog(self) -> None:
        """Answer every connection already queued, so stopping never drops one."""
        saved = self.fork
        self.fork = False  # answer in-process: fast, and no child to wait for
        try:
            for fd in list(self.listeners):
                while self._accept_batch(fd):
                    self._check_pending(time.monotonic() - CHECK_AFTER)  # free fds as we go
        finally:
            self.fork = saved

    # -- signals and shutdown ------------------------------------------------------------------

    def _on_wake(self, _fd: int) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _handle_signals(self) -> None:
        signals, self.signals = self.signals, []
        for signum in signals:
            if signum == _signal.SIGHUP:
                log.info("SIGHUP: nothing to reload; still serving")
            elif not self.stop_reason:
                self.stop_reason = _STOP_SIGNALS[signum]

    def _shutdown(self) -> int:
        self.notifier.stopping(f"Stopping ({self.stop_reason}); {self.served} connections answered")
        log.info(f"stopping: {self.stop_reason}; {self.served} TCP connections answered")
        self._drain_backlog()
        self._listen(False)
        deadline = time.monotonic() + self.linger + 2.0
        while (self.pending or self.lingering or self.children) and time.monotonic() < deadline:
            now = time.monotonic()
            wake = deadline
            if self.pending:
                wake = min(wake, self.pending[0][0] + CHECK_AFTER)
            if self.deadlines:
                wake = min(wake, self.deadlines[0][0])
            timeout = max(0.0, wake - now) + 0.001
            if self.children:
                timeout = min(timeout, 0.005)
            for fd, _events in self.ep.poll(timeout, 256):
                if fd in self.lingering:
                    self._on_lingering(fd)
                elif fd == self.wake_r:
                    self._on_wake(fd)
            now = time.monotonic()
            self._check_pending(now - CHECK_AFTER)
            self._expire(now)
            self._reap()
        while self.pending:
            self.pending.popleft()[1].close()
        for fd, conn in list(self.lingering.items()):
            self._close(fd, conn)
        return 0
