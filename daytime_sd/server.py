"""The serving loop: accept, answer in-process or fork, linger, reap, signals, UDP.

One epoll set holds the listeners, the datagram sockets, the lingering connections and a
signal wake-up pipe, so nothing a client does can block another.  Signal handlers only set
flags; the loop acts on them (PEP 475 retries the interrupted syscalls for us).  Children
are reaped by the loop, not on SIGCHLD (see install_signals).

In-process mode: the line is sent on accept, our side is shut down, and the connection
lingers in the epoll set until the client closes or the linger bound runs out (see
answer.py for why).  Fork mode: a child answers each connection; at ``max_children`` the
listeners leave the epoll set, so further clients wait in the kernel backlog instead of
being refused.
"""

from __future__ import annotations

import _socket
import errno
import os
import resource
import select
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence

from daytime_sd import log
from daytime_sd.config import Config
from daytime_sd.netaddr import format_endpoint, split
from daytime_sd.notify import Notifier
from daytime_sd.protocol import LineCache
from daytime_sd.udp import DatagramResponder

IN = select.EPOLLIN
ACCEPT_BATCH = 64  # accepts per listener per wake-up: a burst on one port cannot starve others
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
        self.families = {fd: sock.family for fd, sock in self.listeners.items()}
        self.udp = DatagramResponder(datagrams, self.cache, config.udp_rate)
        self.ep = select.epoll()
        self.lingering: dict[int, _socket.socket] = {}  # answered, waiting for the client's EOF
        self.fresh: list[tuple[int, _socket.socket]] = []  # lingering, not yet looked at
        self.watched: set[int] = set()  # lingering and in the epoll set
        self.deadlines: deque[tuple[float, int, _socket.socket]] = deque()
        self.max_lingering = _max_lingering()
        self.children: set[int] = set()
        self.high_fd = 1024  # highest fd a child may have inherited (grows with accepts)
        self.max_children = config.max_children
        self.listening = False
        self.paused_until = 0.0  # after EMFILE: when to try accept(2) again
        self.out_of_fds = False
        self.emfile_logged = False  # this shortage was reported (later ones within a minute not)
        self.emfile_logged_at = -1e9
        self.fork_failed_at = -1e9
        self.served = 0
        self.stop_reason = ""
        self.signals: list[int] = []
        self.buf = bytearray(65536)
        self.last_activity = time.monotonic()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
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
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
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
        while not self.stop_reason:
            now = time.monotonic()
            wake = min(next_watchdog, next_status)
            if self.deadlines:
                wake = min(wake, self.deadlines[0][0])
            if self.paused_until:
                wake = min(wake, self.paused_until)
            if idle:
                wake = min(wake, self.last_activity + idle)
            # Connections answered in the last round get one poll's time to read and close
            # before we look at them; most have by then, and never need an epoll_ctl.
            fresh, self.fresh = self.fresh, []
            if fresh:
                timeout = 0.0005
            elif self.children:
                timeout = min(0.005, max(0.0, wake - now) + 0.001)
            else:
                timeout = max(0.0, wake - now) + 0.001
            for fd, _events in poll(timeout, 256):
                if fd in lingering:
                    self._on_lingering(fd)
                else:
                    handler = handlers.get(fd)
                    if handler is not None:
                        handler(fd)
            if fresh:
                self._check_fresh(fresh)
            if self.children:
                self._reap()
            now = time.monotonic()
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
        if self.lingering or self.children:
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

    def _accept_batch(self, fd: int) -> bool:
        """Accept up to ACCEPT_BATCH connections; True if the batch ran out before the queue."""
        listener = self.listeners[fd]
        family = self.families[fd]
        line = self.cache.line(time.time())
        self.last_activity = time.monotonic()
        for _ in range(ACCEPT_BATCH):
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
            if conn_fd > self.high_fd:
                self.high_fd = conn_fd
            if self.fork and self._fork(conn, line):
                if len(self.children) >= self.max_children:
                    self._listen(False)  # the rest wait in the backlog, not refused
                    return False
                continue
            self._answer(conn, line)
        return True

    def _answer(self, conn: _socket.socket, line: bytes) -> None:
        """Send, half-close, then linger in the epoll set until EOF or the deadline."""
        try:
            conn.send(line, _socket.MSG_DONTWAIT)  # a fresh socket buffer takes a line at once
            conn.shutdown(_socket.SHUT_WR)
        except OSError:
            conn.close()
            return
        self._linger(conn)

    def _linger(self, conn: _socket.socket) -> None:
        """Keep an answered connection until the client closes or the linger bound runs out."""
        fd = conn.fileno()
        if len(self.lingering) >= self.max_lingering:
            self._shed(1)
        self.lingering[fd] = conn
        self.deadlines.append((time.monotonic() + self.linger, fd, conn))
        self.fresh.append((fd, conn))

    def _check_fresh(self, fresh: list[tuple[int, _socket.socket]]) -> None:
        """Close what the client closed already; the rest join the epoll set."""
        lingering = self.lingering
        for fd, conn in fresh:
            if lingering.get(fd) is conn and self._drain(fd, conn):
                self.ep.register(fd, IN | select.EPOLLRDHUP)
                self.watched.add(fd)

    def _on_lingering(self, fd: int) -> None:
        conn = self.lingering.get(fd)
        if conn is not None:
            self._drain(fd, conn)

    def _drain(self, fd: int, conn: _socket.socket) -> bool:
        """Discard client input; close at EOF or error.  True while the connection stays."""
        try:
            for _ in range(16):  # up to 1 MiB per wake-up, then let the others run
                if not conn.recv_into(self.buf, 0, _socket.MSG_DONTWAIT):
                    break
            else:
                return True
        except BlockingIOError:
            return True
        except OSError:
            pass
        self._close(fd, conn)
        return False

    def _close(self, fd: int, conn: _socket.socket) -> None:
        del self.lingering[fd]
        if fd in self.watched:
            self.watched.discard(fd)
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
        """Close the oldest lingering connections; they have had their line already."""
        shed = 0
        while shed < count and self.deadlines:
            _deadline, fd, conn = self.deadlines.popleft()
            if self.lingering.get(fd) is conn:
                self._close(fd, conn)
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
                    f"descriptors are free (open: {len(self.lingering)} lingering, "
                    f"{len(self.children)} children)"
                )
        if self._shed(16):
            return
        self._listen(False)
        self.paused_until = time.monotonic() + 0.1

    def _fork(self, conn: _socket.socket, line: bytes) -> bool:
        """Hand ``conn`` to a child; False when fork failed and the caller must answer it.

        The child sends the line, shuts the connection down and exits at once; the parent
        keeps its copy and does the lingering in its epoll set.  So a child lives for
        microseconds whatever the client does, and clients that never read or never close
        cannot hold ``max_children`` processes hostage for the linger time.
        """
        try:
            pid = os.fork()
        except OSError as err:
            now = time.monotonic()
            if now - self.fork_failed_at > 10:
                log.error(f"fork failed: {err.strerror}; answering in-process meanwhile")
            self.fork_failed_at = now
            return False
        if pid == 0:
            self._child(conn, line)
        self.children.add(pid)
        self._linger(conn)
        return True

    def _child(self, conn: _socket.socket, line: bytes) -> None:
        """In the child: drop every inherited descriptor but the client's, answer, exit.

        Kept to a handful of syscalls: the fork rate of the whole server depends on it.
        """
        status = 1
        try:
            signal.set_wakeup_fd(-1)  # the pipe is the parent's; do not write to it
            fd = conn.fileno()
            os.closerange(3, fd)  # listeners, epoll, pipe, other clients, the journal...
            os.closerange(fd + 1, self.high_fd + 1)
            conn.send(line, _socket.MSG_DONTWAIT)  # a fresh socket buffer takes a line at once
            conn.shutdown(_socket.SHUT_WR)
            status = 0
        except OSError:
            pass  # the client reset or vanished
        finally:
            os._exit(status)

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
                    self._check_fresh(self.fresh)  # free fds as we go
                    self.fresh = []
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
            if signum == signal.SIGHUP:
                log.info("SIGHUP: nothing to reload; still serving")
            elif not self.stop_reason:
                self.stop_reason = signal.Signals(signum).name

    def _shutdown(self) -> int:
        self.notifier.stopping(f"Stopping ({self.stop_reason}); {self.served} connections answered")
        log.info(f"stopping: {self.stop_reason}; {self.served} TCP connections answered")
        self._drain_backlog()
        self._listen(False)
        deadline = time.monotonic() + self.linger + 2.0
        while (self.lingering or self.children) and time.monotonic() < deadline:
            now = time.monotonic()
            wake = min(deadline, self.deadlines[0][0]) if self.deadlines else deadline
            fresh, self.fresh = self.fresh, []
            timeout = max(0.0, wake - now) + 0.001
            if fresh or self.children:
                timeout = min(timeout, 0.0005 if fresh else 0.005)
            for fd, _events in self.ep.poll(timeout, 256):
                if fd in self.lingering:
                    self._on_lingering(fd)
                elif fd == self.wake_r:
                    self._on_wake(fd)
            self._check_fresh(fresh)
            self._expire(time.monotonic())
            self._reap()
        for fd, conn in list(self.lingering.items()):
            self._close(fd, conn)
        return 0
