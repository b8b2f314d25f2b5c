# SPDX-License-Identifier: MIT
"""NIST's daytime layout: MJD, TT, L, H and the line, against published lines and real zones."""

from __future__ import annotations

import calendar
import itertools
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from daytime_sd import config, nist
from daytime_sd.clock import STA_DEL, STA_INS, STA_PLL, STA_UNSYNC, TIME_ERROR, TIME_OK, KernelClock

LEAP_LIST = Path(nist.LEAP_SECONDS_LIST)
SYNCED = KernelClock(TIME_OK, STA_PLL, 20_000, 1_000)
UNSYNCED = KernelClock(TIME_ERROR, STA_UNSYNC, 16_000_000, 16_000_000)  # these machines today


def utc(text: str) -> int:
    """'2004-02-15 10:23:32' (UTC) as Unix time; calendar is fine in a test."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S"))


# --- MJD ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2004-02-15 10:23:32", 53050),  # NIST's ITS page example line
        ("1993-01-23 22:01:22", 49010),  # ClockWatch manual's sample NIST line
        ("2005-08-22 02:57:53", 53604),  # a captured NIST answer used as a test fixture
        ("2018-11-02 06:04:48", 58424),  # a captured NIST answer
        ("2025-10-18 06:49:19", 60966),  # a captured NIST answer
        ("1858-11-17 00:00:00", 0),  # the MJD epoch
        ("1858-11-16 23:59:59", -1),
        ("1970-01-01 00:00:00", 40587),  # the Unix epoch
        ("1969-12-31 23:59:59", 40586),
        ("2000-01-01 00:00:00", 51544),  # J2000's calendar day
        ("2000-02-29 12:00:00", 51603),  # a leap day in a century leap year
        ("2100-02-28 00:00:00", 88127),
        ("2100-03-01 00:00:00", 88128),  # 2100 is not a leap year: no 29 February
        ("2132-08-31 23:59:59", 99999),  # the last five-digit MJD
    ],
)
def test_mjd(moment: str, expected: int) -> None:
    assert nist.mjd(utc(moment)) == expected
    assert nist.mjd(utc(moment) + 0.999) == expected  # the day, not the nearest day


def test_mjd_steps_at_utc_midnight() -> None:
    midnight = utc("2016-12-31 00:00:00")
    assert nist.mjd(midnight - 1) + 1 == nist.mjd(midnight) == nist.mjd(midnight + 86399)


# --- the line ----------------------------------------------------------------------------

LINE = re.compile(
    rb"(?P<mjd>\d{5}) (?P<date>\d\d-\d\d-\d\d) (?P<time>\d\d:\d\d:\d\d) (?P<tt>\d\d) "
    rb"(?P<l>[012]) (?P<h>[012]) (?P<adv>[ \d]{3}\.\d) (?P<label>\S+) \*\r\n"
)


@pytest.mark.parametrize(
    ("published", "tz"),
    [
        # NIST's own example; February: standard time, no change this month.
        ("53050 04-02-15 10:23:32 00 0 0 909.7 UTC(NIST) *", "America/Denver"),
        # A captured answer in August: DST.
        ("53604 05-08-22 02:57:53 50 0 0 725.6 UTC(NIST) *", "America/Denver"),
        # A captured answer two days before the November change: the countdown.
        ("58424 18-11-02 06:04:48 03 0 0 885.9 UTC(NIST) *", "America/Denver"),
        # ClockWatch's sample, January.
        ("49010 93-01-23 22:01:22 00 0 0  50.0 UTC(NIST) *", "America/Denver"),
    ],
)
def test_published_lines_field_for_field(
    zone: Callable[[str], None], published: str, tz: str
) -> None:
    """NIST's lines, in NIST's zone, with the label set to NIST's: equal except msADV."""
    zone(tz)
    date_time = " ".join(published.split()[1:3])
    when = calendar.timegm(time.strptime(date_time, "%y-%m-%d %H:%M:%S"))
    ours = nist.render(when, SYNCED, None, label=nist.NIST_LABEL)
    expected = published[:31] + "  0.0" + published[36:]  # msADV: we do not advance
    assert ours == expected.encode() + b"\r\n"


def test_default_line_layout_and_widths(zone: Callable[[str], None]) -> None:
    zone("UTC")
    line = nist.render(utc("2004-02-15 10:23:32"), SYNCED, None)
    assert line == b"53050 04-02-15 10:23:32 00 0 0   0.0 UTC(HOST) *\r\n"
    m = LINE.fullmatch(line)
    assert m, line
    # NIST's columns: every field ends where NIST's does (msADV is right-aligned), so a
    # parser that cuts at fixed offsets reads the same fields.
    nist_line = b"53050 04-02-15 10:23:32 00 0 0 909.7 UTC(NIST) *"
    ends = [f.end() for f in re.finditer(rb"\S+", nist_line)]
    assert [f.end() for f in re.finditer(rb"\S+", line)] == ends
    assert len(line) == len(nist_line) + 2
    assert line.isascii() and line.count(b"\r\n") == 1 and line.endswith(b"\r\n")


def test_line_carries_live_h_l_and_tt(zone: Callable[[str], None]) -> None:
    zone("Europe/Berlin")
    table = nist.leap_seconds(
        "#@\t3723753600\n2272060800\t10\n3692217600\t11\t# 1 Jan 2017\n"
    )  # a one-leap list valid into 2018
    m = LINE.fullmatch(nist.render(utc("2016-12-31 23:59:59"), UNSYNCED, table))
    assert m, m
    assert (m["tt"], m["l"], m["h"]) == (b"00", b"1", b"2")
    m = LINE.fullmatch(nist.render(utc("2016-10-30 00:59:59"), SYNCED, None))
    assert m
    assert (m["date"], m["tt"], m["l"], m["h"]) == (b"16-10-30", b"01", b"0", b"0")


def test_two_digit_year_and_six_digit_mjd(zone: Callable[[str], None]) -> None:
    zone("UTC")
    assert nist.render(utc("2000-01-01 00:00:00"), SYNCED, None).startswith(b"51544 00-01-01 ")
    assert nist.render(utc("2132-09-01 00:00:00"), SYNCED, None).startswith(b"100000 32-09-01 ")


def test_labels() -> None:
    assert nist.check_label(nist.DEFAULT_LABEL) == "UTC(HOST)"
    assert nist.check_label(nist.NIST_LABEL) == "UTC(NIST)"
    assert len(nist.DEFAULT_LABEL) == len(nist.NIST_LABEL)
    for bad in ("", "UTC HOST", "UTC(HÖST)", "x" * 33, "tab\there", "nl\n"):
        with pytest.raises(ValueError):
            nist.check_label(bad)


def test_the_option_table_copies_of_the_labels_agree() -> None:
    # config.py repeats them so that the per-connection path need not import nist.py.
    assert (config.NIST_DEFAULT_LABEL, config.NIST_LABEL) == (nist.DEFAULT_LABEL, nist.NIST_LABEL)


# --- TT ----------------------------------------------------------------------------------


def tt_at(moments: list[str]) -> list[int]:
    return [nist.dst_code(utc(m)) for m in moments]


def test_tt_america_denver_2025(zone: Callable[[str], None]) -> None:
    """NIST's own zone: DST from 2 a.m. on 9 March (09:00 UTC) to 2 a.m. on 2 November."""
    zone("America/Denver")
    spring = [
        "2025-02-28 23:59:59",  # February: no change this month
        "2025-03-01 00:00:00",  # the countdown starts with the month: 8 days to go
        "2025-03-08 23:59:59",
        "2025-03-09 00:00:00",  # the UTC day of the change
        "2025-03-09 08:59:59",  # 01:59:59 MST
        "2025-03-09 09:00:00",  # 03:00:00 MDT
    ]
    assert tt_at(spring) == [0, 59, 52, 51, 51, 50]
    autumn = [
        "2025-10-18 06:49:19",  # October: the change is next month (see dst_code's deviation)
        "2025-10-31 23:59:59",
        "2025-11-01 00:00:00",
        "2025-11-02 00:00:00",
        "2025-11-02 07:59:59",  # 01:59:59 MDT
        "2025-11-02 08:00:00",  # 01:00:00 MST
        "2025-11-30 23:59:59",
    ]
    assert tt_at(autumn) == [50, 50, 2, 1, 1, 0, 0]


def test_tt_europe_berlin_2026(zone: Callable[[str], None]) -> None:
    """Last Sunday of March and October, at 01:00 UTC."""
    zone("Europe/Berlin")
    assert tt_at(
        ["2026-03-01 00:00:00", "2026-03-28 23:59:59", "2026-03-29 00:59:59", "2026-03-29 01:00:00"]
    ) == [79, 52, 51, 50]
    assert tt_at(
        ["2026-09-30 23:59:59", "2026-10-01 00:00:00", "2026-10-25 00:59:59", "2026-10-25 01:00:00"]
    ) == [50, 25, 1, 0]


def test_tt_southern_hemisphere_australia_sydney(zone: Callable[[str], None]) -> None:
    """DST over the new year; the changes fall on Saturday 16:00 UTC (2 or 3 a.m. Sunday)."""
    zone("Australia/Sydney")
    assert tt_at(["2025-01-15 12:00:00", "2025-03-31 23:59:59"]) == [50, 50]
    # DST ends Sun 6 Apr 03:00 AEDT = Sat 5 Apr 16:00 UTC: the UTC day of the change counts.
    assert tt_at(["2025-04-01 00:00:00", "2025-04-05 15:59:59", "2025-04-05 16:00:00"]) == [
        5,
        1,
        0,
    ]
    # DST starts Sun 5 Oct 02:00 AEST = Sat 4 Oct 16:00 UTC.
    assert tt_at(["2025-10-01 00:00:00", "2025-10-04 15:59:59", "2025-10-04 16:00:00"]) == [
        54,
        51,
        50,
    ]
    assert tt_at(["2025-07-01 00:00:00", "2025-12-31 23:59:59"]) == [0, 50]


def test_tt_zone_without_dst_is_always_00(zone: Callable[[str], None]) -> None:
    zone("Asia/Tokyo")
    start = utc("2025-01-01 00:00:00")
    assert {nist.dst_code(start + day * 86400 + 3600 * (day % 24)) for day in range(366)} == {0}
    zone("UTC")
    assert {nist.dst_code(start + day * 86400) for day in range(0, 366, 7)} == {0}


def test_tt_across_a_year_boundary_pacific_fiji(zone: Callable[[str], None]) -> None:
    """Fiji's DST ended in January (Sun 18 Jan 2015 03:00 FJST = Sat 17 Jan 14:00 UTC)."""
    zone("Pacific/Fiji")
    assert tt_at(
        [
            "2014-12-31 23:59:59",  # December: DST, no change this month
            "2015-01-01 00:00:00",  # the new month (and year) starts the countdown
            "2015-01-17 13:59:59",
            "2015-01-17 14:00:00",
        ]
    ) == [50, 17, 1, 0]
    zone("America/Denver")
    assert tt_at(["2025-12-31 23:59:59", "2026-01-01 00:00:00"]) == [0, 0]


def test_tt_month_with_two_changes_counts_to_the_next(zone: Callable[[str], None]) -> None:
    """A POSIX rule with DST on the 1st and 4th Sundays of March 2026 (1 and 22 March)."""
    zone("AAA3BBB,M3.1.0/2,M3.4.0/2")  # standard UTC-3: changes at 05:00 and 04:00 UTC
    assert tt_at(
        [
            "2026-02-28 23:59:59",
            "2026-03-01 00:00:00",  # first change today
            "2026-03-01 05:00:00",  # DST now; the second change is 21 days ahead
            "2026-03-22 03:59:59",
            "2026-03-22 04:00:00",
        ]
    ) == [0, 51, 22, 1, 0]


# --- L -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_table() -> nist.LeapTable:
    """The machine's own tzdata list (bookworm, trixie and sid all ship it)."""
    return nist.read_leap_table(str(LEAP_LIST))


def test_real_list_announces_the_2016_leap_second(real_table: nist.LeapTable) -> None:
    last_of_2016 = utc("2017-01-01 00:00:00")
    assert real_table.changes[last_of_2016] == 1
    assert len(real_table.changes) == 27  # 1972-07 to 2016-12; none since
    assert real_table.valid_at(last_of_2016)  # every list printed since 2016 runs past it
    moments = [
        "2016-11-30 23:59:59",
        "2016-12-01 00:00:00",  # the whole month carries the warning
        "2016-12-31 23:59:59",  # the second before 23:59:60
        "2017-01-01 00:00:00",
        "2015-06-15 12:00:00",  # the one before: end of June 2015
        "2015-07-01 00:00:00",
    ]
    assert [nist.leap_indicator(utc(m), 0, real_table) for m in moments] == [0, 1, 1, 0, 1, 0]


def test_kernel_leap_state_wins(real_table: nist.LeapTable) -> None:
    quiet_month = utc("2020-03-31 12:00:00")
    assert nist.leap_indicator(quiet_month, 0, real_table) == 0
    assert nist.leap_indicator(quiet_month, 1, real_table) == 1
    assert nist.leap_indicator(quiet_month, -1, real_table) == 2
    assert nist.leap_indicator(utc("2016-12-31 12:00:00"), -1, real_table) == 2
    assert nist.leap_indicator(quiet_month, 1, None) == 1
    assert KernelClock(TIME_OK, STA_INS, 0, 0).leap == 1
    assert KernelClock(TIME_OK, STA_DEL, 0, 0).leap == -1


LIST_2016 = """\
#$\t3676924800
#@\t{expiry}
2272060800\t10\t# 1 Jan 1972
3644697600\t36\t# 1 Jul 2015
3692217600\t37\t# 1 Jan 2017
#h\t00000000 00000000 00000000 00000000 00000000
"""


def test_expired_table_is_ignored() -> None:
    dec_2016 = utc("2016-12-15 00:00:00")
    # The list IERS published in July 2016 ran until 28 June 2017.
    current = nist.leap_seconds(LIST_2016.format(expiry=3707596800))
    assert current.expires == utc("2017-06-28 00:00:00")
    assert nist.leap_indicator(dec_2016, 0, current) == 1
    # The same entries in a list that expired on 1 December 2016: ignored from then on.
    stale = nist.leap_seconds(LIST_2016.format(expiry=3689539200))
    assert stale.expires == utc("2016-12-01 00:00:00")
    assert nist.leap_indicator(dec_2016 - 86400 * 15, 0, stale) == 0  # November: no leap
    assert nist.leap_indicator(dec_2016, 0, stale) == 0
    assert nist.leap_indicator(dec_2016, 1, stale) == 1  # the kernel still counts
    # No expiry line at all: nothing shows the list is current.
    undated = nist.leap_seconds("2272060800 10\n3692217600 37\n")
    assert undated.expires is None and not undated.valid_at(0)
    assert nist.leap_indicator(dec_2016, 0, undated) == 0


def test_negative_leap_second() -> None:
    table = nist.leap_seconds("#@ 4000000000\n3692217600 37\n3881520000 36\n")  # 1 Jan 2023
    assert nist.leap_indicator(utc("2022-12-10 00:00:00"), 0, table) == 2
    assert nist.leap_indicator(utc("2023-01-01 00:00:00"), 0, table) == 0


@pytest.mark.parametrize("text", ["3692217600\n", "3692217600 37 12\n", "x 37\n", "#@ soon\n"])
def test_malformed_list_is_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        nist.leap_seconds(text)


def test_missing_list_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        nist.read_leap_table(str(tmp_path / "leap-seconds.list"))


# --- H -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "status", "maxerror_us", "expected"),
    [
        (TIME_OK, STA_PLL, 5_000, 0),
        (TIME_OK, STA_PLL, 2_000_000, 0),  # HEALTHY_MAXERROR_US, inclusive
        (TIME_OK, STA_PLL, 2_000_001, 1),
        (TIME_OK, STA_PLL, 5_000_000, 1),  # DEGRADED_MAXERROR_US, inclusive
        (TIME_OK, STA_PLL, 5_000_001, 2),
        (TIME_OK, STA_PLL, 15_999_999, 2),
        (TIME_ERROR, STA_UNSYNC, 16_000_000, 2),  # the kernel's clamp: unsynchronized
        (TIME_OK, 0, 16_000_000, 2),
        # chronyd without rtcsync keeps STA_UNSYNC (hence TIME_ERROR) on a disciplined clock:
        # maxerror decides, as in systemd-timedated.
        (TIME_ERROR, STA_UNSYNC | STA_PLL, 30_000, 0),
    ],
)
def test_health_from_timex(state: int, status: int, maxerror_us: int, expected: int) -> None:
    clock = KernelClock(state, status, maxerror_us, maxerror_us // 2)
    assert nist.health(clock) == expected


def test_health_of_an_unreadable_clock_is_not_healthy() -> None:
    assert nist.health(None) == 2
    assert nist.health(UNSYNCED) != 0


# --- TT: the edges of the month and of the day ---------------------------------------------


@pytest.mark.parametrize(
    ("tz", "moments", "expected"),
    [
        # Denver left DST on Sunday 31 October 2004 (08:00 UTC): the month's last day.
        ("America/Denver", ["2004-10-01 00:00:00", "2004-10-30 23:59:59",
                            "2004-10-31 07:59:59", "2004-10-31 08:00:00"], [31, 2, 1, 0]),
        # São Paulo left DST on Sunday 18 February 2018 at 00:00 local (02:00 UTC).
        ("America/Sao_Paulo", ["2018-01-31 23:59:59", "2018-02-01 00:00:00",
                               "2018-02-18 01:59:59", "2018-02-18 02:00:00"], [50, 18, 1, 0]),
        # Tehran began DST at 00:00 local on 22 March 2021: 20:30 UTC on the 21st, the UTC
        # day of the change (the line's days are UTC days).
        ("Asia/Tehran", ["2021-03-01 00:00:00", "2021-03-21 00:00:00",
                         "2021-03-21 20:29:59", "2021-03-21 20:30:00"], [71, 51, 51, 50]),
    ],
    ids=["last-day-of-the-month", "february", "late-in-the-utc-day"],
)  # fmt: skip
def test_tt_changes_at_the_edges_of_real_zones(
    zone: Callable[[str], None], tz: str, moments: list[str], expected: list[int]
) -> None:
    zone(tz)
    assert tt_at(moments) == expected


def test_tt_change_in_the_last_second_of_the_month(zone: Callable[[str], None]) -> None:
    """A POSIX rule whose DST starts at 23:59:59 UTC on 31 March 2024 (the last Sunday)."""
    zone("AAA0BBB,M3.5.0/23:59:59,M10.5.0/3")
    assert tt_at(
        [
            "2024-03-01 00:00:00",
            "2024-03-30 12:00:00",
            "2024-03-30 23:59:58",
            "2024-03-31 00:00:00",
            "2024-03-31 23:59:58",
            "2024-03-31 23:59:59",
        ]
    ) == [81, 52, 52, 51, 51, 50]


def test_tt_change_in_the_last_second_of_a_utc_day(zone: Callable[[str], None]) -> None:
    """DST from 23:59:59 UTC on Sunday 24 March 2024: that is still the 24th's count."""
    zone("AAA0BBB,M3.4.0/23:59:59,M10.5.0/3")
    start = utc("2024-03-01 00:00:00")
    for when in range(start, start + 86400, 613):  # from any second of the 1st
        assert nist.dst_code(when) == 51 + 23
    assert tt_at(["2024-03-24 00:00:00", "2024-03-24 23:59:58", "2024-03-24 23:59:59"]) == [
        51,
        51,
        50,
    ]


def test_tt_change_in_the_first_second_of_the_next_month(zone: Callable[[str], None]) -> None:
    """DST from 00:00 UTC on Monday 1 April 2024: not March's change, so no countdown."""
    zone("AAA0BBB,M4.1.1/0,M10.5.0/3")
    assert tt_at(["2024-03-15 12:00:00", "2024-03-31 23:59:59", "2024-04-01 00:00:00"]) == [
        0,
        0,
        50,
    ]


def test_tt_a_dst_of_exactly_one_day_is_seen(zone: Callable[[str], None]) -> None:
    """Changes a day apart (01:00 UTC on 1 and 2 March) are both seen, from any second."""
    zone("AAA0BBB,J60/1,J61/2")
    start = utc("2025-03-01 01:00:00")
    assert nist.dst_code(start - 1) == 51  # the first change today
    assert nist.dst_code(start) == 1 + 1  # DST now: back to standard time tomorrow
    assert nist.dst_code(start + 86400) == 0


def test_tt_at_the_unix_epoch(zone: Callable[[str], None]) -> None:
    """A clock that was never set reads 1970: DST here starts at 12:00 UTC on 1 January."""
    zone("AAA0BBB,M1.1.4/12,M10.5.0/3")
    assert [nist.dst_code(t) for t in (0, 0.5, 43199, 43200)] == [51, 51, 51, 50]


def test_tt_and_l_take_any_moment_of_the_second(zone: Callable[[str], None]) -> None:
    zone("America/Denver")
    table = nist.leap_seconds("#@ 4000000000\n2272060800 10\n3692217600 11\n")
    for moment in ("2025-03-08 23:59:59", "2025-03-09 08:59:59", "2016-12-31 23:59:59"):
        when = utc(moment)
        assert nist.dst_code(when + 0.75) == nist.dst_code(when)
        assert nist.leap_indicator(when + 0.75, 0, table) == nist.leap_indicator(when, 0, table)


# --- L: every month's end -------------------------------------------------------------------


def month_starts(first_year: int, last_year: int) -> list[int]:
    return [calendar.timegm((y, m, 1, 0, 0, 0)) for y in range(first_year, last_year + 1)
            for m in range(1, 13)]  # fmt: skip


def test_l_for_a_leap_second_at_the_end_of_any_month() -> None:
    """The IERS may schedule one at the end of any month: L is 1 through that month only.
    A table with a leap second after every other month, 1970 to 2100."""
    starts = month_starts(1970, 2101)
    for every in (2, 7):  # so that no other month's end can stand in for the right one
        table = nist.LeapTable({t: 1 for t in starts[1::every]}, expires=starts[-1])
        for start, end in itertools.pairwise(starts):
            expected = 1 if end in table.changes else 0
            for when in (start, start + 1_000_000 % (end - start), end - 1):
                assert nist.leap_indicator(when, 0, table) == expected, time.gmtime(when)


def test_l_real_list_in_the_1990s(real_table: nist.LeapTable) -> None:
    """June 1997 and December 1998 ended with a leap second; the months between did not."""
    moments = ["1997-06-15 00:00:00", "1997-07-15 00:00:00", "1998-12-31 23:59:59"]
    assert [nist.leap_indicator(utc(m), 0, real_table) for m in moments] == [1, 0, 1]


def test_table_is_valid_only_before_its_expiry() -> None:
    table = nist.leap_seconds(LIST_2016.format(expiry=3707596800))
    expires = utc("2017-06-28 00:00:00")
    assert table.valid_at(expires - 1) and table.valid_at(expires - 0.5)
    assert not table.valid_at(expires)


def test_negative_leap_second_is_recorded_as_minus_one() -> None:
    table = nist.leap_seconds("#@ 4000000000\n3692217600 37\n3881520000 36\n")
    assert table.changes == {utc("2023-01-01 00:00:00"): -1}


@pytest.mark.parametrize("text", ["3692217600 +37\n", "3692217600 -1\n", "3692217600 1_0\n"])
def test_list_values_are_plain_digits(text: str) -> None:
    with pytest.raises(ValueError, match="line 1:"):
        nist.leap_seconds(text)


def test_errors_name_the_line() -> None:
    with pytest.raises(ValueError, match=r"^line 3: "):
        nist.leap_seconds("# the list\n2272060800 10\n3692217600\n")
    with pytest.raises(ValueError, match=r"^line 2: bad expiry"):
        nist.leap_seconds("2272060800 10\n#@ soon\n")


# --- the label and the kernel's part of the line --------------------------------------------


def test_label_bounds() -> None:
    for good in ("x" * 32, "!", "~", "!UTC~"):
        assert nist.check_label(good) == good
    for bad in ("\x7f", "UTC\x7f", "x" * 33):
        with pytest.raises(ValueError):
            nist.check_label(bad)


def test_line_without_a_readable_clock_and_with_the_kernels_leap(
    zone: Callable[[str], None],
) -> None:
    zone("UTC")
    when = utc("2020-03-31 12:00:00")
    unknown = LINE.fullmatch(nist.render(when, None, None))
    assert unknown and (unknown["l"], unknown["h"]) == (b"0", b"2")
    for status, leap in ((STA_PLL | STA_INS, b"1"), (STA_PLL | STA_DEL, b"2")):
        m = LINE.fullmatch(nist.render(when, KernelClock(TIME_OK, status, 20_000, 0), None))
        assert m and (m["l"], m["h"]) == (leap, b"0")
