# SPDX-License-Identifier: MIT
"""tzdata's leap-seconds.list: when TAI - UTC changes, and until when the list says so.

A data source for NIST's L digit, as clock.py's kernel state is for H: this module reads
and parses the file, nist.py decides what the line says with it.
"""

from __future__ import annotations

NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
LEAP_SECONDS_LIST = "/usr/share/zoneinfo/leap-seconds.list"  # tzdata, bookworm to sid


class LeapTable:
    """tzdata's leap-seconds.list: when TAI - UTC changes, and until when the list is valid."""

    __slots__ = ("changes", "expires")

    def __init__(self, changes: dict[int, int], expires: int | None) -> None:
        self.changes = changes  # Unix time of the first second after a leap → +1 or -1
        self.expires = expires  # Unix time; None when the file states no expiry

    def valid_at(self, when: float) -> bool:
        return self.expires is not None and when < self.expires


def leap_seconds(text: str) -> LeapTable:
    """Parse leap-seconds.list (the IERS/NIST format tzdata ships).

    Data lines are ``NTP-seconds TAI-UTC [# comment]``: from that instant (00:00 UTC on the
    day after the leap second) TAI - UTC is the new value, one more than before for an
    inserted second, one less for a deleted one.  ``#@`` gives the expiry (NTP seconds).
    The ``#h`` hash is not checked: the file comes from a Debian package, not the network.
    Raises ValueError on a line that is neither a comment nor data.
    """
    changes: dict[int, int] = {}
    expires: int | None = None
    previous: int | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("#@"):
            try:
                expires = int(line[2:].split()[0]) - NTP_UNIX_OFFSET
            except (IndexError, ValueError):
                raise ValueError(f"line {number}: bad expiry line {raw!r}") from None
            continue
        line = line.partition("#")[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2 or not all(f.isdigit() and f.isascii() for f in fields):
            raise ValueError(f"line {number}: not 'NTP-time TAI-UTC': {raw!r}")
        at, offset = int(fields[0]) - NTP_UNIX_OFFSET, int(fields[1])
        if previous is not None and offset != previous:
            changes[at] = 1 if offset > previous else -1
        previous = offset
    return LeapTable(changes, expires)


def read_leap_table(path: str = LEAP_SECONDS_LIST) -> LeapTable:
    """Read and parse the list.  Raises OSError or ValueError: the caller logs and goes on
    with ``None`` (L then comes from the kernel alone)."""
    with open(path, encoding="ascii") as f:
        return leap_seconds(f.read())
