# SPDX-License-Identifier: MIT
"""Run the real service with the kernel clock's state taken from a file (for --require-sync).

    python -m tests.integration.fakeclock STATEFILE -- PYTHON -m daytime_sd ARGS...

Everything is the real service (sockets, loop, answers) but ``daytime_sd.clock.read``, which
returns what STATEFILE says at each read: ``synced`` (maxerror 20 ms), ``unsynced``
(TIME_ERROR, STA_UNSYNC, maxerror 16 s, as on an unsynchronized kernel), ``error``
(EPERM, as under a seccomp filter) or ``raise`` (a TypeError, as a binding broken by a
newer Python would raise).  The host's own clock state cannot be changed for a test: it
belongs to the machine.

With ``DAYTIME_TEST_LEAP_LIST=PATH`` the leap-second list is read from PATH instead of
tzdata's, and every read of it is written to stderr as ``fakeclock: leap list read``.
"""

from __future__ import annotations

import errno
import os
import sys

from daytime_sd import cli, clock, nist


def main() -> int:
    path = sys.argv[1]
    args = sys.argv[sys.argv.index("daytime_sd") + 1 :]

    def read() -> clock.KernelClock:
        with open(path) as f:
            state = f.read().strip()
        if state == "synced":
            return clock.KernelClock(clock.TIME_OK, clock.STA_PLL, 20_000, 1_000)
        if state == "unsynced":
            return clock.KernelClock(clock.TIME_ERROR, clock.STA_UNSYNC, 16_000_000, 16_000_000)
        if state == "raise":
            raise TypeError("the binding changed shape")
        raise OSError(errno.EPERM, "Operation not permitted")

    clock.read = read
    leap_list = os.environ.get("DAYTIME_TEST_LEAP_LIST")
    if leap_list:
        real = nist.read_leap_table
        nist.LEAP_SECONDS_LIST = leap_list

        def counted(path: str = leap_list) -> nist.LeapTable:
            sys.stderr.write("fakeclock: leap list read\n")
            return real(path)

        nist.read_leap_table = counted
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
