# SPDX-License-Identifier: MIT
"""NIST's daytime layout, field for field, from the time, the kernel's clock and tzdata's
leap-seconds.list (read here too).

    JJJJJ YR-MO-DA HH:MM:SS TT L H msADV LABEL OTM
    53050 04-02-15 10:23:32 00 0 0   0.0 UTC(HOST) *

The line is rendered by pure functions: the time, the kernel state
(:class:`daytime_sd.clock.KernelClock`) and the leap-second table (:class:`LeapTable`,
which :class:`LeapList` reads from tzdata) are passed in; the zone is the process's
(``TZ`` or /etc/localtime, as ``time.localtime`` sees it).  The time fields
are always UTC, as NIST's are.

**The label.**  NIST's field reads ``UTC(NIST)``: in metrology ``UTC(k)`` names the
realisation of UTC kept by laboratory *k*, and this host is not NIST.  An answer saying so
would tell an admin reading a client's log, or an auditor checking where a system's time
came from, that it was traceable to NIST when it came from this host's clock (which may not
even be synchronized).  The default is therefore ``UTC(HOST)``: nine characters like NIST's,
so parsers that cut the line at fixed columns or split it on blanks keep working, and the
``UTC(`` … ``)`` shape stays for lenient patterns.  Clients that match the literal
``UTC(NIST)`` (some do, e.g. a template ending in ``(NIST) *``) get nothing useful from a
truthful label, so the label is an option: an admin who must serve such clients may set
``UTC(NIST)``, and that claim is then the admin's decision, documented as one, not ours.

**The on-time marker** is ``*`` as NIST sends it: the time on the line refers to the arrival
of the marker.  We do not advance the time for network delay (msADV is ``0.0``), so the line
gives the second it was rendered in, truncated, as every other daytime-sd line does.

**msADV** is ``  0.0`` (NIST's ``%5.1f``).  NIST advances its time by an estimate of half
the round trip; the equivalent here would be half the RTT the kernel measured on this
connection (TCP_INFO), which makes the line per-connection and defeats the render-once-a-
second line cache every mode relies on, and means nothing for UDP.  The daytime line has
whole seconds, which a LAN's delay does not change.  Saying 0.0 is the truthful value: no
advance is applied.
"""

from __future__ import annotations

import os
import time

from daytime_sd import log

# The per-connection path: typing.TYPE_CHECKING would import typing (bench/ "Import costs").
TYPE_CHECKING = False
if TYPE_CHECKING:
    from daytime_sd.clock import KernelClock


# -- tzdata's leap-seconds.list: when TAI - UTC changes, and until when the list says so

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


class LeapList:
    """tzdata's leap-seconds.list, read once and again only when the file changes.

    The file changes when tzdata is upgraded, so the list is read at the first need, then
    again only when :meth:`refresh` sees another file (inode, size or mtime), or after
    :meth:`reload` (SIGHUP).  An expired list is kept and said once: nist.py ignores it as
    a whole past its expiry, and NIST's L then comes from the kernel alone.
    """

    __slots__ = ("_expiry_said", "_stamp", "path", "table")

    def __init__(self, path: str | None = None) -> None:
        self.path = path or LEAP_SECONDS_LIST
        self.table: LeapTable | None = None
        self._stamp: tuple[int, ...] | None = None  # what was read; None: nothing yet
        self._expiry_said = False

    def _identity(self) -> tuple[int, ...]:
        try:
            st = os.stat(self.path)
        except OSError:
            return ()  # missing: read (and fail) again only once it appears
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def refresh(self) -> None:
        """Read the list if it was never read or the file is another one now."""
        stamp = self._identity()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        self._expiry_said = False
        try:
            self.table = read_leap_table(self.path)
        except (OSError, ValueError) as err:
            self.table = None
            log.warning(f"{self.path}: {err}; leap seconds from the kernel only")

    def reload(self) -> None:
        """Read the file again at the next need (SIGHUP)."""
        self._stamp = None

    def at(self, when: float) -> LeapTable | None:
        """The table for an answer at ``when``; says once when it has expired."""
        if self._stamp is None:
            self.refresh()
        table = self.table
        if table is not None and not table.valid_at(when) and not self._expiry_said:
            self._expiry_said = True
            expired = (
                "states no expiry"
                if table.expires is None
                else ("expired on " + time.strftime("%Y-%m-%d", time.gmtime(table.expires)))
            )
            log.notice(
                f"{self.path} {expired}: NIST's leap indicator now comes from the kernel "
                "alone; upgrade tzdata for a current list"
            )
        return table


# -- the line

MJD_UNIX_EPOCH = 40587  # MJD of 1970-01-01
NIST_LABEL = "UTC(NIST)"
DEFAULT_LABEL = "UTC(HOST)"
MS_ADVANCE = "  0.0"
ON_TIME_MARKER = "*"
CRLF = b"\r\n"

# The health digit H from the kernel's maxerror, the bound on the clock's error that the
# kernel itself keeps: whoever disciplines the clock sets it at each update, and the kernel
# adds its 500 ppm tolerance to it every second until the next one.
#
# 0 (healthy) up to 2 s: an NTP client that polls at its longest interval lets maxerror grow
# by about 0.5 s (chronyd and ntpd, 1024 s) or 1 s (systemd-timesyncd, 2048 s) between
# updates, plus its own dispersion, so a working client stays below 2 s; the line's own
# resolution is one second.
HEALTHY_MAXERROR_US = 2_000_000
# 1 ("may be off by up to 5 s", NIST's own figure) up to 5 s: updates have stopped for about
# an hour or more (2 s to 5 s at 500 µs a second).
DEGRADED_MAXERROR_US = 5_000_000
# 2 ("off by more than 5 s") beyond, and always when the clock is unsynchronized or its
# state cannot be read: an unsynchronized kernel reports maxerror 16 s (it clamps there,
# some 8.9 hours after the last update, and sets STA_UNSYNC), so nothing better than "more
# than 5 s" can be promised.  NIST's H = 2 says the error is known to exceed 5 s; ours says it
# cannot be shown to be smaller, the reading that never calls a doubtful clock healthy.
H_HEALTHY, H_MAY_BE_OFF, H_OFF = 0, 1, 2


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).

    Not ``calendar.timegm``: the calendar module imports locale and datetime.
    """
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def mjd(when: float) -> int:
    """Modified Julian Date of the UTC day containing ``when`` (days since 1858-11-17)."""
    return int(when // 86400) + MJD_UNIX_EPOCH


def _next_month(year: int, month: int) -> int:
    """Unix time of 00:00 UTC on the first day of the month after ``year``-``month``."""
    if month == 12:
        return _days_from_civil(year + 1, 1, 1) * 86400
    return _days_from_civil(year, month + 1, 1) * 86400


def _isdst(when: int) -> bool:
    return time.localtime(when).tm_isdst > 0


def dst_code(when: float) -> int:
    """TT: 00 standard time, 50 daylight saving time, and NIST's countdown to a change.

    NIST's definition (US rules only): 00 on standard time, 50 on DST; in the month of a
    change the number counts the days to it, decreasing at 00:00 UTC, and is 1 on the day of
    the change to standard time, 51 on the day of the change to DST, until the change at
    2 a.m. local time; then it reads 00 or 50.  Published lines decode as: the change falls
    on MJD + TT - 1 (or MJD + TT - 51).

    Our generalisation, for the server's own zone (the question is whether *this* host's
    local time is on DST, as ``tm_isdst`` has it):

    - Days are UTC days, the line's own: the count steps at 00:00 UTC as NIST's does, and
      "the day of the change" is the UTC date of the instant of the change, so MJD + TT - 1
      (- 51) is that date on every line whatever the zone.  For the US the UTC and local
      dates of a 2 a.m. change are the same day; far east of Greenwich (Sydney changes at
      16:00 UTC on the Saturday) the UTC date is the day before the local one.
    - "The month of the change" is the UTC month of the line: the countdown runs while the
      next change falls before 00:00 UTC on the first of next month.
    - At the instant of the change, the first second for which ``localtime`` reports the new
      ``tm_isdst``, the code becomes 00 or 50 (or counts down to a second change if one falls
      in the same month: the code always describes the next change, and a month with two
      changes shows both countdowns in turn).  Two changes less than a day apart are not
      seen (the search steps a day at a time); no zone has had them.
    - A zone without DST (Asia/Tokyo, UTC) gives 00 all year; one on permanent DST, 50.
    - The southern hemisphere needs nothing special: Australia/Sydney reads 50 in January,
      counts to 1 in April and to 51 in October.

    Deviation, on purpose: NIST's servers have been seen counting before the month of the
    change (lines quoted in public code: "10-10-19 ... 20", "20-10-11 ... 22",
    "25-10-18 ... 16", each days ahead of a change on the first Sunday of November), i.e. not
    as their published text says.  The window they use is not written anywhere; we follow
    the written rule, which clients decode the same way.
    """
    now = int(when // 1)
    dst_now = _isdst(now)
    base = 50 if dst_now else 0
    utc = time.gmtime(now)
    limit = _next_month(utc.tm_year, utc.tm_mon)
    lo = now
    while lo < limit - 1:
        hi = min(lo + 86400, limit - 1)
        if _isdst(hi) != dst_now:
            while hi - lo > 1:  # bisect to the first second of the new state
                mid = (lo + hi) // 2
                if _isdst(mid) == dst_now:
                    lo = mid
                else:
                    hi = mid
            days = hi // 86400 - now // 86400
            return (1 if dst_now else 51) + days
        lo = hi
    return base


def leap_indicator(when: float, kernel_leap: int, table: LeapTable | None) -> int:
    """L: 1 if a leap second will be inserted at the end of this UTC month, 2 deleted, else 0.

    The kernel wins: STA_INS/STA_DEL (``kernel_leap`` +1/-1, see ``KernelClock.leap``) is
    what the clock will actually do, at the end of today, which for a real leap second is
    the last day of a month.  Otherwise the table decides, but only before its expiry date:
    past it, a list that names no leap second no longer shows that none was announced, so
    an expired table is ignored as a whole and L is 0 unless the kernel says otherwise.
    """
    if kernel_leap > 0:
        return 1
    if kernel_leap < 0:
        return 2
    if table is None or not table.valid_at(when):
        return 0
    utc = time.gmtime(int(when // 1))
    step = table.changes.get(_next_month(utc.tm_year, utc.tm_mon), 0)
    return 1 if step > 0 else 2 if step < 0 else 0


def health(clock: KernelClock | None) -> int:
    """H from the kernel's clock state; the thresholds above say why.

    An unreadable state (None) and an unsynchronized clock are never healthy.
    """
    if clock is None or not clock.synchronized:
        return H_OFF
    if clock.maxerror_us <= HEALTHY_MAXERROR_US:
        return H_HEALTHY
    if clock.maxerror_us <= DEGRADED_MAXERROR_US:
        return H_MAY_BE_OFF
    return H_OFF


def check_label(label: str) -> str:
    """Validate a label: printable ASCII without blanks (it is one field of the line)."""
    if not label or len(label) > 32 or not all(0x21 <= ord(c) < 0x7F for c in label):
        raise ValueError(
            f"label {label!r}: 1 to 32 printable ASCII characters without blanks "
            f"(NIST's field is 9, like {DEFAULT_LABEL!r})"
        )
    return label


def render(
    when: float,
    clock: KernelClock | None,
    table: LeapTable | None,
    label: str = DEFAULT_LABEL,
) -> bytes:
    """The whole answer: one ASCII line in NIST's layout, terminated by CRLF.

    NIST's servers send a line feed, the line, a blank and another line feed
    (``"\\n53604 05-08-22 02:57:53 50 0 0 725.6 UTC(NIST) * \\n"``).  We send the line and
    CRLF: one line with the ending every other daytime-sd format has (RFC 867 says nothing of
    the ending; CRLF is the Internet's text-line convention), so a client that reads up to
    the first line end gets the line itself instead of an empty one.  Clients written for
    NIST strip the surrounding white space (they must, to cope with the leading LF).

    ``label`` is not checked here (the caller validates it once, with :func:`check_label`).
    """
    now = int(when // 1)
    tm = time.gmtime(now)
    kernel_leap = clock.leap if clock is not None else 0
    line = (
        f"{mjd(now):05d} {tm.tm_year % 100:02d}-{tm.tm_mon:02d}-{tm.tm_mday:02d} "
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} {dst_code(now):02d} "
        f"{leap_indicator(now, kernel_leap, table)} {health(clock)} {MS_ADVANCE} "
        f"{label} {ON_TIME_MARKER}"
    )
    return line.encode("ascii") + CRLF
