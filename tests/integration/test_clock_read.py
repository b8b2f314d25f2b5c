# SPDX-License-Identifier: MIT
"""One real adjtimex read on this machine, checked against a second, independent read.

The independent read is written here with nothing from daytime_sd: clock_adjtime(2) on
CLOCK_REALTIME (the system call glibc's adjtimex uses) through libc, the struct unpacked by
offsets with ``struct``.  Neither state is assumed: on these machines the kernel says
TIME_ERROR, STA_UNSYNC, maxerror 16 s today; a synchronized host says otherwise; inside a
container whose seccomp filter refuses the call (systemd-nspawn without CAP_SYS_TIME, where
the autopkgtest runs) it says EPERM.  The checks follow whatever the independent read says.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from daytime_sd import clock, nist

CLOCK_REALTIME = 0
TIMEX_SIZE = 208  # struct timex on LP64
# modes (u32, then 4 bytes of padding), offset, freq, maxerror, esterror (long), status (int)
HEAD = struct.Struct("=I4xqqqqi")
STA_UNSYNC = 0x40
TIME_ERROR = 5
KERNEL_LIMIT_US = 16_000_000  # NTP_PHASE_LIMIT, where the kernel clamps maxerror


def independent_read() -> tuple[int, int, int, int] | int:
    """(state, status, maxerror µs, esterror µs) from clock_adjtime(2) with modes 0, or the
    errno it failed with."""
    if ctypes.sizeof(ctypes.c_long) != 8:
        pytest.skip("the independent read is written for the 64-bit struct timex")
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(TIMEX_SIZE)  # zeroed: modes = 0, a pure read
    state = libc.clock_adjtime(CLOCK_REALTIME, buf)
    if state < 0:
        return ctypes.get_errno()
    _modes, _offset, _freq, maxerror, esterror, status = HEAD.unpack_from(buf.raw)
    return state, status, maxerror, esterror


def ours() -> clock.KernelClock | int:
    try:
        return clock.read()
    except OSError as exc:
        assert exc.errno, exc
        return exc.errno


def test_read_matches_the_independent_read() -> None:
    before = independent_read()
    mine = ours()
    after = independent_read()
    if isinstance(before, int) or isinstance(after, int):
        assert mine in (before, after), (before, mine, after)  # refused alike, same errno
        return
    assert isinstance(mine, clock.KernelClock), mine
    # maxerror grows by 500 µs each second and a daemon may update between the reads:
    # ours must lie between (or equal) the two independent reads' values, state for state.
    assert mine.state in (before[0], after[0])
    assert mine.status in (before[1], after[1])
    low, high = sorted((before[2], after[2]))
    assert low - 1000 <= mine.maxerror_us <= high + 1000, (before, mine, after)
    low, high = sorted((before[3], after[3]))
    assert low - 1000 <= mine.esterror_us <= high + 1000, (before, mine, after)


def test_h_and_status_agree_with_the_kernel() -> None:
    kernel = independent_read()
    mine = ours()
    reading = mine if isinstance(mine, clock.KernelClock) else None
    h = nist.health(reading)
    line = nist.render(1_480_000_000, reading, None)
    assert line.split()[5] == str(h).encode()  # the H field of the line
    if isinstance(kernel, int):
        assert reading is None  # the state cannot be read here: never "healthy"
        assert h == 2
        assert clock.describe(reading).startswith("clock state unknown")
        return
    state, status, maxerror, _esterror = kernel
    assert reading is not None
    if maxerror >= KERNEL_LIMIT_US:
        # What these machines report today: the kernel gave up on the clock.
        assert not reading.synchronized
        assert h == 2
        assert clock.describe(reading) == "clock NOT synchronized"
    else:
        assert reading.synchronized
        if maxerror <= nist.HEALTHY_MAXERROR_US:
            expected = 0
        elif maxerror <= nist.DEGRADED_MAXERROR_US:
            expected = 1
        else:
            expected = 2
        assert h == expected
        assert clock.describe(reading).startswith("clock synchronized (±")
    if state == TIME_ERROR and status & STA_UNSYNC and maxerror >= KERNEL_LIMIT_US:
        assert h != 0  # the case: such a clock must never read as healthy


def test_watch_with_the_real_reader() -> None:
    watch = clock.Watch()
    assert watch.poll(0.0) is True
    kernel = independent_read()
    if isinstance(kernel, int):
        assert watch.clock is None and isinstance(watch.error, OSError)
        assert watch.error.errno == kernel
        assert not watch.synchronized
    else:
        assert watch.clock is not None and watch.error is None
        assert watch.synchronized == (kernel[2] < KERNEL_LIMIT_US)
    priority, text = watch.message()
    refused = clock.refused(watch.error)  # a sandbox's refusal is a notice (issue 21.5)
    assert priority == (6 if watch.synchronized else 5 if refused else 4)
    assert text.startswith("clock ")


# The read refused by a seccomp filter, as ProtectClock=yes and systemd-nspawn refuse it:
# installed in a child process (no_new_privs lets an unprivileged process do it), so that
# the binding to the real libc is seen to fail with the kernel's errno, not with 0.
SECCOMP_CHILD = """
import ctypes, errno, struct, sys
arch, calls = {"x86_64": (0xC000003E, (305, 159)), "aarch64": (0xC00000B7, (266, 171))}[sys.argv[1]]
refuse = 0x00050000 | errno.EPERM  # SECCOMP_RET_ERRNO | EPERM
code = [(0x20, 0, 0, 4), (0x15, 1, 0, arch), (0x06, 0, 0, 0x7FFF0000), (0x20, 0, 0, 0)]
for nr in calls:  # clock_adjtime, adjtimex
    code += [(0x15, 0, 1, nr), (0x06, 0, 0, refuse)]
code.append((0x06, 0, 0, 0x7FFF0000))  # SECCOMP_RET_ALLOW
filters = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *c) for c in code))
prog = struct.pack("HP", len(code), ctypes.addressof(filters))  # native: struct sock_fprog
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0, ctypes.get_errno()  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.c_char_p(prog), 0, 0) == 0, ctypes.get_errno()  # SECCOMP filter
from daytime_sd import clock
try:
    clock.read()
except OSError as exc:
    print(exc.errno, exc.strerror)
else:
    print("read")
"""


def test_a_refused_read_raises_the_kernels_errno() -> None:
    machine = platform.machine()
    if machine not in ("x86_64", "aarch64"):
        pytest.skip(f"the seccomp filter here is written for x86_64 and aarch64, not {machine}")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", SECCOMP_CHILD, machine], cwd=root,
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split(None, 1) == [str(errno.EPERM), "adjtimex: Operation not permitted\n"]
