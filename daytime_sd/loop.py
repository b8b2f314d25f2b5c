# SPDX-License-Identifier: MIT
"""The event loop: one epoll set, the fd → handler table, timers, and signals as flags.

Nothing here knows what it serves.  Handlers run when their fd is readable; after every
round each timer (a callable taking the time and returning when it next wants to run) is
called, and the loop sleeps until the earliest of them.  Signal handlers only record the
signal and write to the wake-up pipe; the timers act on ``signals`` (PEP 475 retries the
interrupted system calls for us).
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import time
from collections.abc import Callable, Iterable

Timer = Callable[[float], float]  # called with the time, returns when it next wants to run
Handler = Callable[[int], None]  # called with the readable fd

IN = select.EPOLLIN
FOREVER = float("inf")  # "no deadline": a timer's answer, and run()'s default end
MAX_EVENTS = 256  # per poll: a flood on one fd cannot starve the timers


def fd_from(fd: int, lowest: int) -> int:
    """``fd``, moved to ``lowest`` or above if it lies below (it filled a hole there)."""
    if fd >= lowest:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest)
    os.close(fd)
    return moved


class Loop:
    def __init__(self) -> None:
        self.ep = select.epoll()
        self.handlers: dict[int, Handler] = {}
        self.timers: list[Timer] = []
        self.signals: list[int] = []
        self.caught: list[int] = []
        self.running = False
        self.wake_r = self.wake_w = -1

    def add(self, fd: int, handler: Handler, events: int = IN) -> None:
        self.ep.register(fd, events)
        self.handlers[fd] = handler

    def remove(self, fd: int) -> None:
        """Stop watching ``fd``; call it before closing a descriptor another process shares.

        epoll watches the open file, not the number: a file a forked child still holds
        would go on being reported after our close, for a number we no longer own.
        """
        if self.handlers.pop(fd, None) is not None:
            self.ep.unregister(fd)

    def open_wakeup(self, lowest: int) -> None:
        """The signal wake-up pipe, at ``lowest`` or above (a forked child keeps it open)."""
        pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wake_r, self.wake_w = (fd_from(fd, lowest) for fd in pipe)
        self.add(self.wake_r, self._drain_wakeup)

    def catch(self, signums: Iterable[int]) -> None:
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for signum in signums:
            signal.signal(signum, self._on_signal)
            self.caught.append(signum)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signals.append(signum)

    def take_signals(self) -> list[int]:
        signals, self.signals = self.signals, []
        return signals

    def _drain_wakeup(self, _fd: int) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def run(self, until: float = FOREVER) -> None:
        """Poll and dispatch until ``stop()`` or the monotonic time ``until``."""
        poll = self.ep.poll
        handlers = self.handlers
        timers = self.timers
        monotonic = time.monotonic
        self.running = True
        wake = monotonic()
        while self.running:
            now = monotonic()
            if now >= until:
                break
            # Nothing due blocks (epoll takes -1, and raises OverflowError for infinity);
            # the ceiling rounding of its millisecond timeout never wakes us early.
            timeout = min(wake, until) - now
            for fd, _events in poll(-1.0 if timeout == FOREVER else max(0.0, timeout), MAX_EVENTS):
                handler = handlers.get(fd)
                if handler is not None:
                    handler(fd)
            now = monotonic()
            wake = FOREVER
            for timer in timers:
                due = timer(now)
                if due < wake:
                    wake = due
        self.running = False

    def stop(self) -> None:
        self.running = False

    def close(self) -> None:
        """Release the epoll set and the pipe; the caught signals are ignored from now on.

        Ignored, not restored: the process is on its way out, and CPython puts SIG_DFL back
        for every signal with a Python handler while it finalizes, so a reload or a second
        stop arriving then (``systemctl reload`` racing a stop) would kill it.
        """
        for signum in self.caught:
            signal.signal(signum, signal.SIG_IGN)
        if self.caught:
            signal.set_wakeup_fd(-1)
        self.ep.close()
        for fd in (self.wake_r, self.wake_w):
            if fd >= 0:
                os.close(fd)
        self.wake_r = self.wake_w = -1
