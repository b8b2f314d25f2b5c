# SPDX-License-Identifier: MIT
"""The kernel's view of its own clock: adjtimex(3) with ``modes = 0``, read-only.

The loop modes read it once a second, a per-connection process only for ``--format nist``
and ``--require-sync``; ``_ctypes`` is imported on the first read, not with the module, so
importing this for :class:`Watch` or :func:`describe` costs nothing.  glibc (2.32 and
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

import errno
import os

TYPE_CHECKING = False  # typing and collections.abc cost memory every forked child copies
if TYPE_CHECKING:
    from collections.abc import Callable

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


_adjtimex: Callable[[], KernelClock] | None = None


def timex_layout(long_size: int) -> dict[str, int]:
    """Byte offsets in struct timex (<linux/timex.h>) of the fields we read, and its size.

    ``modes`` is an unsigned int, padded to the alignment of the ``long`` fields that follow
    (offset, freq, maxerror, esterror), then the int ``status``.  The whole struct is 208
    bytes on every 64-bit Linux; a buffer of ``size`` bytes is more than enough everywhere.
    """
    return {
        "modes": 0,
        "maxerror": 3 * long_size,
        "esterror": 4 * long_size,
        "status": 5 * long_size,
        "size": 64 * long_size,
    }


def bind(call: Callable[[object], int] | None = None) -> Callable[[], KernelClock]:
    """A reader around libc's ``adjtimex`` (``call`` replaces it in tests).

    Through ``_ctypes``, the C half of ctypes, not ``ctypes`` itself: ctypes' Python half
    costs the serving process (and every forked child's page tables) several times the
    memory of the few lines below (bench/: Import costs).
    """
    import _ctypes
    import sys

    class Long(_ctypes._SimpleCData):  # type: ignore[type-arg]
        _type_ = "l"

    class Int(_ctypes._SimpleCData):  # type: ignore[type-arg]
        _type_ = "i"

    at = timex_layout(_ctypes.sizeof(Long))

    class Buffer(_ctypes.Array):  # type: ignore[type-arg]
        _type_ = Long
        _length_ = at["size"] // _ctypes.sizeof(Long)

    if call is None:

        class Function(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = Int

        libc = _ctypes.dlopen(None, 0x102)  # type: ignore[arg-type]  # RTLD_GLOBAL|RTLD_NOW: our libc
        call = Function(_ctypes.dlsym(libc, "adjtimex"))
    order = sys.byteorder

    def field(raw: bytes, name: str, size: int) -> int:
        start = at[name]
        return int.from_bytes(raw[start : start + size], order, signed=True)

    def adjtimex() -> KernelClock:
        tx = Buffer()  # zeroed: modes = 0 reads and changes nothing
        state = call(_ctypes.byref(tx))
        if state < 0:
            err = _ctypes.get_errno()
            raise OSError(err, f"adjtimex: {os.strerror(err)}")
        raw = bytes(memoryview(tx).cast("B"))
        size = _ctypes.sizeof(Long)
        return KernelClock(
            state,
            field(raw, "status", 4),
            field(raw, "maxerror", size),
            field(raw, "esterror", size),
        )

    return adjtimex


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
