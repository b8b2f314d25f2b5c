# SPDX-License-Identifier: MIT
"""The service's life: the parts wired together, READY, STATUS, the watchdog, idle exit, stop.

The loop (loop.py) runs the parts' handlers and timers; accepting.py decides when to
accept and answers, closing.py closes answered connections cleanly, children.py forks and
reaps, udp.py answers datagrams.  This module starts them, reports to systemd, and stops
them within a bound: the drain of the accept queue and the wait for lingering clients
together take at most STOP_DRAIN + STOP_WAIT seconds, well inside the units'
TimeoutStopSec=10s whatever ``--linger`` says.
"""

from __future__ import annotations

import gc
import resource
import signal
import socket
import time
from collections.abc import Sequence

from daytime_sd import log
from daytime_sd.accepting import Acceptor
from daytime_sd.children import Children
from daytime_sd.clock import ClockSync
from daytime_sd.closing import CleanClose
from daytime_sd.config import Config
from daytime_sd.loop import FOREVER, Loop
from daytime_sd.netaddr import format_endpoint
from daytime_sd.notify import Notifier
from daytime_sd.protocol import LineCache
from daytime_sd.udp import DatagramResponder

STOP_DRAIN = 1.0  # seconds, at most, answering what is queued when we stop
STOP_WAIT = 3.0  # seconds, at most, then waiting for lingering clients and children
IDLE_DRAIN = 0.5  # seconds, at most, answering what is queued before an idle exit
_STOP_SIGNALS: dict[int, str] = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}


def max_lingering() -> int:
    """Lingering connections hold one fd each; a quarter of the fd limit stays for the rest."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 65536
    return max(16, min(16384, soft * 3 // 4 - 16))


def _kind(sock: socket.socket) -> str:
    if sock.family == socket.AF_UNIX:
        return "unix" if sock.type == socket.SOCK_STREAM else "unix datagram"
    return "tcp" if sock.type == socket.SOCK_STREAM else "udp"


class Server:
    def __init__(
        self,
        config: Config,
        listeners: Sequence[socket.socket],
        datagrams: Sequence[socket.socket],
        fork: bool,
        activated: bool,
        notifier: Notifier,
        source: str = "standalone",  # how we were started, for the log: the mode chosen
    ) -> None:
        self.notifier = notifier
        self.source = source
        self.fork = fork
        self.linger = config.linger
        self.idle = config.idle_timeout if activated else 0.0
        self.sync = ClockSync(config)
        render = self.sync.render if self.sync.needed_per_connection else None
        self.cache = LineCache(config.format, config.utc, render)
        self.sockets = [*listeners, *datagrams]
        self.loop = loop = Loop()
        # A forked child closes the epoll set, the listeners and the datagram sockets: all
        # of fd 3 up to own_fds_end.  The wake-up pipe goes above them (see children.py).
        own_fds_end = max(loop.ep.fileno(), *(s.fileno() for s in self.sockets)) + 1
        loop.open_wakeup(own_fds_end)
        self.closer = CleanClose(self.linger, max_lingering(), loop.add, loop.remove)
        self.children = Children(config.max_children, own_fds_end) if fork else None
        self.acceptor = Acceptor(
            loop, listeners, self.cache, self.closer, self.children, config.log_connections
        )
        self.udp = DatagramResponder(datagrams, self.cache, config.udp_rate, config.udp_total_rate)
        self.last_datagram = -1e9
        for sock in datagrams:
            sock.setblocking(False)
            loop.add(sock.fileno(), self._on_datagram)
        self.stop_reason = ""
        self.next_status = self.next_watchdog = FOREVER
        self.next_clock = FOREVER  # the first read is in run(), before READY=1

    # -- addresses and status --------------------------------------------------------------

    def describe(self) -> str:
        parts = [f"{_kind(s)} {format_endpoint(s.getsockname())}" for s in self.sockets]
        mode = "fork per connection" if self.fork else "in-process"
        return f"{', '.join(parts) or 'no sockets'} ({mode})"

    def status_line(self) -> str:
        busy = f", {len(self.children.pids)} children" if self.children else ""
        clock = self.sync.status()
        return (
            f"Serving {self.describe()}; {self.acceptor.served} TCP connections and "
            f"{self.udp.answered} datagrams answered{busy}{'; ' + clock if clock else ''}"
        )

    def _busy(self) -> bool:
        return bool(len(self.closer) or (self.children and self.children.pids))

    # -- running ---------------------------------------------------------------------------

    def run(self) -> int:
        loop = self.loop
        loop.catch((*_STOP_SIGNALS, signal.SIGHUP))
        # Reaping first: the children's room decides whether the acceptor listens.
        loop.timers[:] = [self.closer.tick, self.acceptor.tick, self._tick]
        if self.children:
            loop.timers.insert(0, self.children.tick)
            # What start-up made lives as long as we do: out of the collector's way, so
            # that a collection cannot write to every page a child shares with us (the
            # gc.freeze() documentation's own case; bench/ fork cells).
            gc.freeze()
        # The clock's state before the first accept or datagram: the client whose connection
        # started us is answered (NIST's H, --require-sync) from a state that was read.
        now = time.monotonic()
        self.sync.poll(now)
        self.next_clock = now + self.sync.watch.interval
        self.acceptor.tick(now)
        self.notifier.ready(self.status_line())
        log.info(f"serving {self.describe()}; {self.source}")
        now = time.monotonic()
        self.next_status = now + 1.0  # STATUS= at most once a second
        if self.notifier.watchdog_interval:  # READY=1 carried the first WATCHDOG=1
            self.next_watchdog = now + self.notifier.watchdog_interval
        loop.run()
        return self._stop()

    def _on_datagram(self, fd: int) -> None:
        self.last_datagram = time.monotonic()  # UDP traffic keeps an idle exit away too
        self.udp.on_readable(fd)

    def _tick(self, now: float) -> float:
        """Signals, the clock's state, STATUS, the watchdog and the idle timeout."""
        if self.loop.signals:
            self._signals()
        if now >= self.next_clock:
            self.next_clock = now + self.sync.watch.interval
            if self.sync.poll(now):  # a change is logged
                self.cache.invalidate()  # H, or --require-sync's silence, follows at once
                self.next_status = now  # and STATUS= says so
        if now >= self.next_watchdog:
            self.notifier.watchdog()
            self.next_watchdog = now + (self.notifier.watchdog_interval or FOREVER)
        if now >= self.next_status:
            self.notifier.status(self.status_line())
            self.next_status = now + 1.0
        wake = min(self.next_status, self.next_watchdog, self.next_clock)
        if self.idle:
            idle_at = max(self.acceptor.last_activity, self.last_datagram) + self.idle
            if now >= idle_at and not self._busy():
                if self.acceptor.drain(now + IDLE_DRAIN):  # a client came in the meantime
                    self.acceptor.last_activity = time.monotonic()
                else:
                    self.stop_reason = f"idle for {self.idle:g} s"
            wake = min(wake, max(idle_at, now + 0.05))
        if self.stop_reason:
            self.loop.stop()
        return wake

    def _signals(self) -> None:
        for signum in self.loop.take_signals():
            if signum == signal.SIGHUP:
                self._reload_zone()
            elif not self.stop_reason:
                self.stop_reason = _STOP_SIGNALS[signum]

    def _reload_zone(self) -> None:
        """SIGHUP: read TZ and /etc/localtime again (glibc reads them once per process), and
        the leap-second list."""
        time.tzset()
        self.sync.reload()  # and tzdata's leap-second list
        self.cache.invalidate()
        zone = time.strftime("%Z")
        log.info(f"SIGHUP: time zone read again ({zone}); still serving")

    def _stop(self) -> int:
        """Answer what is queued and let lingering clients close, in bounded time."""
        self.notifier.stopping(
            f"Stopping ({self.stop_reason}); {self.acceptor.served} connections answered"
        )
        log.info(f"stopping: {self.stop_reason}; {self.acceptor.served} TCP connections answered")
        acceptor, loop = self.acceptor, self.loop
        acceptor.stopping = True
        now = time.monotonic()
        acceptor.tick(now)  # the listeners leave the epoll set
        acceptor.drain(now + STOP_DRAIN)
        loop.timers[:] = [self.closer.tick, self._stopped]
        if self.children:
            loop.timers.insert(0, self.children.tick)
        if self._busy():
            loop.run(until=time.monotonic() + min(self.linger, STOP_WAIT) + 0.1)
        self.closer.close_all()
        if self.children:
            self.children.reap()
        acceptor.close()
        for sock in self.sockets:
            sock.close()
        loop.close()
        self.notifier.close()
        return 0

    def _stopped(self, now: float) -> float:
        if not self._busy():
            self.loop.stop()
        return FOREVER
