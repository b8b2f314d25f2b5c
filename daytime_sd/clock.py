# SPDX-License-Identifier: MIT
"""The kernel's view of its own clock: adjtimex(3) with ``modes = 0``, read-only.

The loop modes read it once a second, a per-connection process only for ``--format nist``
and ``--require-sync``.  glibc (2.32 and
later: every supported release) implements ``adjtimex`` with the clock_adjtime(2) system
call on CLOCK_REALTIME, so that is the one a seccomp filter must allow.  A read needs no
privilege (a write needs CAP_SYS_TIME, which no unit grants), but a filter can refuse it:
``ProtectClock=yes`` makes it fail with EPERM (systemd issue #26413).

*Synchronized* deliberately does not follow STA_UNSYNC (nor the TIME_ERROR state, which
the kernel returns whenever STA_UNSYNC is set).  chronyd leaves STA_UNSYNC set on a
disciplined clock unless ``rtcsync`` is configured, so that the kernel does not copy the
system time to the RTC every 11 minutes; a flag-based answer would call such a clock
unsynchronized for ever.  What the kernel itself maintains is ``maxerror``: whoever
disciplines the clock sets it with each update, the kernel adds the 500 ppm tolerance to it
every second, and at 16 s (NTP_PHASE_LIMIT) clamps it and sets STA_UNSYNC.  A clock is
synchronized while ``maxerror`` is below 16 s: the rule systemd-timedated uses for
"System clock synchronized" (systemd PR #13245) and the one these machines' TIME_ERROR,
STA_UNSYNC, maxerror = 16 s state agrees with.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable

from daytime_sd import log, nist
from daytime_sd.config import Config
from daytime_sd.protocol import NIST_FORMAT, render

# adjtimex(2) return values (the clock state).
TIME_OK = 0
TIME_INS = 1  # insert a leap second at the end of this UTC day
TIME_DEL = 2  # delete one
TIME_OOP = 3  # the leap second is in progress
TIME_WAIT = 4  # it has just happened
TIME_ERROR = 5  # STA_UNSYNC (or a PPS/clock fault) is set
STATE_NAMES = ("TIME_OK", "TIME_INS", "TIME_DEL", "TIME_OOP", "TIME_WAIT", "TIME_ERROR")

# struct timex status bits (<linux/timex.h>).
STA_PLL = 0x0001
STA_INS = 0x0010
STA_DEL = 0x0020
STA_UNSYNC = 0x0040

# The kernel's NTP_PHASE_LIMIT: where it clamps maxerror and declares the clock unsynchronized.
MAXERROR_LIMIT_US = 16_000_000


class KernelClock:
    """One adjtimex() result: the state, the status bits and the two error figures (µs)."""

    __slots__ = ("esterror_us", "maxerror_us", "state", "status")

    def __init__(self, state: int, status: int, maxerror_us: int, esterror_us: int) -> None:
        self.state = state
        self.status = status
        self.maxerror_us = maxerror_us
        self.esterror_us = esterror_us

    @property
    def synchronized(self) -> bool:
        """maxerror below the kernel's 16 s limit; see the module docstring for why not the flag."""
        return self.maxerror_us < MAXERROR_LIMIT_US

    @property
    def leap(self) -> int:
        """+1 if the kernel is armed to insert a leap second at the end of today, -1 delete."""
        if self.status & STA_INS:
            return 1
        if self.status & STA_DEL:
            return -1
        return 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KernelClock):
            return NotImplemented
        return (self.state, self.status, self.maxerror_us, self.esterror_us) == (
            other.state,
            other.status,
            other.maxerror_us,
            other.esterror_us,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable slots, compared by value

    def __repr__(self) -> str:
        name = STATE_NAMES[self.state] if 0 <= self.state < len(STATE_NAMES) else str(self.state)
        return (
            f"KernelClock({name}, status={self.status:#x}, "
            f"maxerror_us={self.maxerror_us}, esterror_us={self.esterror_us})"
        )


class Timex(ctypes.Structure):
    """struct timex, as <linux/timex.h> declares it (208 bytes on every 64-bit Linux).

    We read ``maxerror``, ``esterror`` and ``status``; ctypes lays the fields out with the
    C compiler's alignment, so every field sits where the kernel writes it.
    """

    _fields_ = (
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long), ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long), ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long), ("shift", ctypes.c_int), ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long), ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int), ("reserved", ctypes.c_int * 11),
    )  # fmt: skip


def bind(call: Callable[[object], int] | None = None) -> Callable[[], KernelClock]:
    """A reader around libc's ``adjtimex`` (``call`` replaces it in tests)."""
    if call is None:
        libc = ctypes.CDLL(None, use_errno=True)  # the C library this Python runs on
        function = libc.adjtimex
        function.argtypes = (ctypes.POINTER(Timex),)
        function.restype = ctypes.c_int
        call = function

    def adjtimex() -> KernelClock:
        tx = Timex()  # zeroed: modes = 0 reads and changes nothing
        state = call(ctypes.byref(tx))
        if state < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"adjtimex: {os.strerror(err)}")
        return KernelClock(state, tx.status, tx.maxerror, tx.esterror)

    return adjtimex


_adjtimex: Callable[[], KernelClock] | None = None  # bound at the first read


def read() -> KernelClock:
    """The kernel's clock state now.  Raises OSError (EPERM under ``ProtectClock=yes``)."""
    global _adjtimex
    if _adjtimex is None:
        _adjtimex = bind()
    return _adjtimex()


# What a seccomp filter answers for a system call it refuses: EPERM from systemd's
# ProtectClock=, systemd-nspawn's own filter and Docker's default profile, ENOSYS or EACCES
# from others.  Nothing the admin of this service can change from inside the sandbox.
REFUSED = frozenset((errno.EPERM, errno.EACCES, errno.ENOSYS))


def refused(error: BaseException | None) -> bool:
    """Whether ``error`` is the sandbox refusing the read (rather than the read failing)."""
    return isinstance(error, OSError) and error.errno in REFUSED


def reason(error: BaseException | None) -> str:
    """Why the state is unknown, in a few words, for the log and STATUS=."""
    if error is None:
        return "not read yet"
    if isinstance(error, OSError):
        why = os.strerror(error.errno) if error.errno else str(error)
        if refused(error):
            return f"adjtimex refused by the sandbox ({why})"
        return f"adjtimex failed ({why})" if why else "adjtimex failed"
    return f"reading it failed ({type(error).__name__}: {error})"


def describe(clock: KernelClock | None, error: BaseException | None = None) -> str:
    """The STATUS= text.

    The figure is maxerror, rounded up to a whole millisecond, not esterror: maxerror is a
    bound the kernel keeps growing by itself (500 ppm a second) when updates stop, while
    esterror is whatever the NTP daemon last wrote and stays small and stale after the
    daemon dies.  "±N ms" must stay true without the daemon's help.
    """
    if clock is None:
        return f"clock state unknown: {reason(error)}"
    if not clock.synchronized:
        return "clock NOT synchronized"
    return f"clock synchronized (±{-(-clock.maxerror_us // 1000)} ms)"


class Watch:
    """The latest kernel clock state, read at most once per ``interval`` seconds.

    Pure apart from the injected ``reader``: the caller passes the (monotonic) time, and
    learns from :meth:`poll` when the state that gets logged changed (synchronized, not
    synchronized, unreadable), so that it logs one line per change and not one per read.

    The reader is an input that can fail in any way: a sandbox refusing the system call,
    or the binding itself breaking on a newer Python.  Every failure means "state unknown"
    (NIST's H = 2, ``--require-sync`` withholds) and serving goes on.
    """

    __slots__ = ("_last", "_reader", "_state", "clock", "error", "interval")

    def __init__(self, reader: Callable[[], KernelClock] = read, interval: float = 1.0) -> None:
        self._reader = reader
        self.interval = interval
        self._last: float | None = None
        self._state: str | None = None  # None until the first poll: the first one reports
        self.clock: KernelClock | None = None  # None while the state cannot be read
        self.error: Exception | None = None

    @property
    def synchronized(self) -> bool:
        """What ``--require-sync`` asks: an unreadable clock counts as not synchronized."""
        return self.clock is not None and self.clock.synchronized

    def poll(self, now: float) -> bool:
        """Read if ``interval`` has passed since the last read; True when the state changed.

        The first poll always reads and reports.  A ``now`` before the last read (a
        caller's clock that was stepped back) reads at once rather than waiting it out.
        """
        last = self._last
        if last is not None and 0 <= now - last < self.interval:
            return False
        self._last = now
        try:
            self.clock = self._reader()
            self.error = None
        except Exception as exc:  # any failure is "unknown", never a crash
            self.clock = None
            self.error = exc
        state = "unknown" if self.clock is None else str(self.clock.synchronized)
        changed = state != self._state
        self._state = state
        return changed

    def message(self) -> tuple[int, str]:
        """(syslog priority, text) for the log line of a change.

        Warning while the clock is known to be unsynchronized, or cannot be read for a
        reason nobody expects; notice when a sandbox refuses the read, which the admin of
        this service cannot change and which would otherwise warn at every start.
        """
        if self.clock is None:
            priority = 5 if refused(self.error) else 4
            return priority, f"clock state unknown: {reason(self.error)}"
        text = describe(self.clock)
        if self.clock.synchronized:
            return 6, text
        return 4, f"{text} (maxerror {self.clock.maxerror_us // 1000} ms, {self.state_name})"

    @property
    def state_name(self) -> str:
        clock = self.clock
        if clock is None:
            return "unknown"
        if 0 <= clock.state < len(STATE_NAMES):
            return STATE_NAMES[clock.state]
        return str(clock.state)


# -- the clock's state in the service: logged, in STATUS=, in NIST's H, --require-sync

WITHHELD = b""  # the answer while --require-sync holds it back


class ClockSync:
    """What the service does with the clock's state: the log, STATUS=, NIST's H, --require-sync.

    The loop modes (Accept=no, standalone) read the state at most
    once a second from a timer, never on the answering path, and log one line whenever it
    changes (warning priority while not synchronized).  A per-connection process (Accept=yes,
    inetd) reads it only when ``--format nist`` or ``--require-sync`` needs it: everything
    else would be a cost on every connection for a line nobody reads.

    ``--require-sync``: while the clock is not synchronized (or its state cannot be read) the
    answer is empty: a TCP client gets a normal close (FIN) with no line and a datagram gets
    no reply.  RFC 867 has no way to say "I do not know the time"; silence is the one answer
    no client can take for a time.
    """

    def __init__(self, config: Config) -> None:
        self.nist = config.format == NIST_FORMAT
        self.require = config.require_sync
        self.label = config.nist_label
        self.watch = Watch(read)
        self.leaps = nist.LeapList()
        self._fmt = config.format
        self._utc = config.utc
        self._reported = False  # the first report is the state at start, not a change

    @property
    def needed_per_connection(self) -> bool:
        return self.nist or self.require

    def poll(self, now: float, quiet: bool = False) -> bool:
        """Read the state if a second has passed; log a change.  True if it changed.

        The loop modes call it before READY=1, so the first client is answered from a
        state that was read, and then once a second.
        """
        changed = self.watch.poll(now)
        if self.nist:
            self.leaps.refresh()  # a stat a second: a tzdata upgrade is seen without a reload
        if changed and not quiet:
            priority, text = self.watch.message()
            if self.require and not self.watch.synchronized:
                text += "; --require-sync: no answers until it is"
            elif self.require and self._reported:
                text += "; answering again"
            self._reported = True
            log.log(priority, text)
        return changed

    def reload(self) -> None:
        """SIGHUP: the leap-second list is read again at the next need."""
        self.leaps.reload()

    def status(self) -> str:
        if self.watch.clock is None and self.watch.error is None:
            return ""  # not read yet
        return describe(self.watch.clock, self.watch.error)

    def render(self, second: int) -> bytes:
        """The answer for ``second``, or WITHHELD."""
        if self.require and not self.watch.synchronized:
            return WITHHELD
        if self.nist:
            return nist.render(second, self.watch.clock, self.leaps.at(second), self.label)
        return render(self._fmt, second, self._utc)
