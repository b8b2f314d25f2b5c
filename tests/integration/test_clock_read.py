"""One real adjtimex read on this machine, checked against a second, independent read.

The independent read is written here with nothing from daytime_sd: the raw
clock_adjtime(CLOCK_REALTIME) system call through libc, the struct unpacked by offsets with
``struct``.  Neither state is assumed: on these machines the kernel says TIME_ERROR,
STA_UNSYNC, maxerror 16 s today, on a synchronized host it says otherwise, and the checks
follow whatever the independent read says.
"""

from __future__ import annotations

import ctypes
import struct

import pytest

from daytime_sd import clock, nist

CLOCK_REALTIME = 0
TIMEX_SIZE = 208  # struct timex on LP64
# modes (u32, then 4 bytes of padding), offset, freq, maxerror, esterror (long), status (int)
HEAD = struct.Struct("=I4xqqqqi")
STA_UNSYNC = 0x40
TIME_ERROR = 5
KERNEL_LIMIT_US = 16_000_000  # NTP_PHASE_LIMIT, where the kernel clamps maxerror


def independent_read() -> tuple[int, int, int, int]:
    """(state, status, maxerror µs, esterror µs) from clock_adjtime(2) with modes 0."""
    if ctypes.sizeof(ctypes.c_long) != 8:
        pytest.skip("the independent read is written for 64-bit struct timex")
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(TIMEX_SIZE)  # zeroed: modes = 0, a pure read
    state = libc.clock_adjtime(CLOCK_REALTIME, buf)
    if state < 0:
        pytest.fail(f"clock_adjtime failed here: errno {ctypes.get_errno()}")
    _modes, _offset, _freq, maxerror, esterror, status = HEAD.unpack_from(buf.raw)
    return state, status, maxerror, esterror


def test_read_matches_the_independent_read() -> None:
    before = independent_read()
    ours = clock.read()
    after = independent_read()
    # maxerror grows by 500 µs each second and a daemon may update between the reads:
    # ours must lie between (or equal) the two independent reads' values, state for state.
    assert ours.state in (before[0], after[0])
    assert ours.status in (before[1], after[1])
    low, high = sorted((before[2], after[2]))
    assert low - 1000 <= ours.maxerror_us <= high + 1000, (before, ours, after)
    low, high = sorted((before[3], after[3]))
    assert low - 1000 <= ours.esterror_us <= high + 1000, (before, ours, after)


def test_h_and_status_agree_with_the_kernel() -> None:
    state, status, maxerror, _esterror = independent_read()
    ours = clock.read()
    h = nist.health(ours)
    line = nist.render(1_480_000_000, ours, None)
    assert line.split()[5] == str(h).encode()  # the H field of the line
    if maxerror >= KERNEL_LIMIT_US:
        # What these machines report today: the kernel gave up on the clock.
        assert not ours.synchronized
        assert h == 2
        assert clock.describe(ours) == "clock NOT synchronized"
    else:
        assert ours.synchronized
        if maxerror <= nist.HEALTHY_MAXERROR_US:
            expected = 0
        elif maxerror <= nist.DEGRADED_MAXERROR_US:
            expected = 1
        else:
            expected = 2
        assert h == expected
        assert clock.describe(ours).startswith("clock synchronized (±")
    if state == TIME_ERROR and status & STA_UNSYNC and maxerror >= KERNEL_LIMIT_US:
        assert h != 0  # the case: such a clock must never read as healthy


def test_watch_with_the_real_reader() -> None:
    watch = clock.Watch()
    assert watch.poll(0.0) is True
    assert watch.clock is not None and watch.error is None
    _state, _status, maxerror, _esterror = independent_read()
    assert watch.synchronized == (maxerror < KERNEL_LIMIT_US)
    priority, text = watch.message()
    assert priority == (6 if watch.synchronized else 4)
    assert text.startswith("clock ")
