# SPDX-License-Identifier: MIT
"""The pure part: formats, presets, validation, the per-second cache."""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daytime_sd.protocol import (
    MAX_LINE,
    PRESETS,
    FormatError,
    LineCache,
    render,
    resolve_format,
    validate_format,
)

WHEN = 1_795_500_000.0  # Wed Nov 25 2026 ... UTC; fixed so results are exact


@pytest.fixture
def tz() -> Iterator[None]:
    saved = os.environ.get("TZ")
    yield
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


def set_tz(name: str) -> None:
    os.environ["TZ"] = name
    time.tzset()


def test_ctime_preset_is_the_classic_line() -> None:
    assert render(PRESETS["ctime"], WHEN, utc=True) == b"Tue Nov 24 06:00:00 2026\r\n"
    assert render(PRESETS["ctime"], 0, utc=True) == b"Thu Jan 01 00:00:00 1970\r\n"
    assert render("%a %b %d %T %Y", WHEN, True) == b"Tue Nov 24 06:00:00 2026\r\n"


def test_every_preset_for_a_fixed_moment(tz: None) -> None:
    set_tz("NPT-5:45")  # a zone whose offset has minutes, east of Greenwich
    when = WHEN + 86400 * 4 + 3600 * 13 + 60 * 7 + 9  # Sat Nov 28 2026 19:07:09 UTC
    assert render(PRESETS["ctime"], when, utc=False) == b"Sun Nov 29 00:52:09 2026\r\n"
    assert render(PRESETS["rfc867"], when, utc=False) == (
        b"Sunday, November 29, 2026 00:52:09-NPT\r\n"
    )
    assert render(PRESETS["rfc2822"], when, utc=False) == b"Sun, 29 Nov 2026 00:52:09 +0545\r\n"
    assert render(PRESETS["iso8601"], when, utc=False) == b"2026-11-29T00:52:09+05:45\r\n"
    assert render(PRESETS["iso8601"], when, utc=True) == b"2026-11-28T19:07:09+00:00\r\n"
    assert render(PRESETS["rfc2822"], when, utc=True) == b"Sat, 28 Nov 2026 19:07:09 +0000\r\n"
    set_tz("XYZ+3:30")  # west: UTC-03:30
    assert render(PRESETS["iso8601"], when, utc=False) == b"2026-11-28T15:37:09-03:30\r\n"
    assert render(PRESETS["rfc2822"], when, utc=False) == b"Sat, 28 Nov 2026 15:37:09 -0330\r\n"


def test_every_line_is_printable_ascii_with_crlf() -> None:
    for name, fmt in PRESETS.items():
        line = render(fmt, WHEN, utc=True)
        assert line.endswith(b"\r\n"), name
        assert all(0x20 <= b < 0x7F for b in line[:-2]), name


def test_rfc867_preset_matches_the_rfc_example_shape(tz: None) -> None:
    set_tz("PST8PDT")
    line = render(PRESETS["rfc867"], time.mktime((1982, 2, 22, 17, 37, 43, 0, 0, -1)), utc=False)
    assert line == b"Monday, February 22, 1982 17:37:43-PST\r\n"


def test_rfc2822_and_iso8601_presets(tz: None) -> None:
    set_tz("UTC0")
    assert render(PRESETS["rfc2822"], 0, utc=False) == b"Thu, 01 Jan 1970 00:00:00 +0000\r\n"
    assert render(PRESETS["iso8601"], 0, utc=True) == b"1970-01-01T00:00:00+00:00\r\n"
    set_tz("IST-5:30")
    assert render(PRESETS["iso8601"], 0, utc=False) == b"1970-01-01T05:30:00+05:30\r\n"
    set_tz("EST5")
    assert render(PRESETS["iso8601"], 0, utc=False) == b"1969-12-31T19:00:00-05:00\r\n"


def test_literal_percent_before_colon_z_is_kept() -> None:
    assert render("%%:z", 0, utc=True) == b"%:z\r\n"


def test_utc_flag_and_tz_are_honoured(tz: None) -> None:
    set_tz("JST-9")
    assert render("%H", 0, utc=False) == b"09\r\n"
    assert render("%H", 0, utc=True) == b"00\r\n"


def test_resolve_format_maps_presets_and_passes_strftime() -> None:
    assert resolve_format("ctime") == PRESETS["ctime"]
    assert resolve_format("%H:%M") == "%H:%M"


@pytest.mark.parametrize("bad", ["", "   ", "caf\u00e9 %H", "%H%n", "%t%H", "line\r\n%H"])
def test_bad_formats_are_rejected(bad: str) -> None:
    with pytest.raises(FormatError):
        validate_format(bad, utc=True)


@pytest.mark.parametrize("good", [*PRESETS.values(), "%s", "%H:%M:%S", "daytime %F"])
def test_good_formats_pass(good: str) -> None:
    validate_format(good, utc=False)


def tzif(path: Path, abbreviation: bytes, offset: int) -> str:
    """A minimal TZif (version 1) file: one zone type, no transitions; returns TZ for it."""
    counts = struct.pack(">6l", 0, 0, 0, 0, 1, len(abbreviation) + 1)
    zone_type = struct.pack(">lBB", offset, 0, 0)
    path.write_bytes(b"TZif" + bytes(16) + counts + zone_type + abbreviation + b"\0")
    return str(path)


@pytest.mark.parametrize(
    ("abbreviation", "shown"),
    [
        ("\u00c4X".encode(), b"?X"),  # non-ASCII (UTF-8 "ÄX")
        (b"A\x01B", b"A?B"),  # a control character
        (b"A\x7fB", b"A?B"),  # DEL
    ],
)
def test_time_zone_names_outside_ascii_are_replaced_at_run_time(
    tz: None, tmp_path: Path, abbreviation: bytes, shown: bytes
) -> None:
    # The zone is set after the format was validated, as a changed /etc/localtime can be:
    # what reaches the client is still printable ASCII.
    validate_format("%H %Z", utc=False)
    set_tz(tzif(tmp_path / "zone", abbreviation, 3600))
    assert time.localtime(0).tm_zone != "UTC"  # the file was read: the test means something
    assert render("%H %Z", 0, utc=False) == b"01 " + shown + b"\r\n"
    assert render("%H", 0, utc=True) == b"00\r\n"


def test_a_numeric_zone_abbreviation_is_kept(tz: None) -> None:
    set_tz("<+03>-3")
    assert render("%Z", 0, utc=False) == b"+03\r\n"


def test_line_cache_renders_once_per_second() -> None:
    cache = LineCache("%S", utc=True)
    first = cache.line(100.2)
    assert first == b"40\r\n"
    assert cache.line(100.9) is first
    assert cache.line(101.0) == b"41\r\n"


def test_colon_z_among_other_characters(tz: None) -> None:
    assert render(" %:z", 0, utc=True) == b" +00:00\r\n"  # a character before "%" sorts lower
    assert render("#%:z!", 0, utc=True) == b"#+00:00!\r\n"
    assert render("%:z!", 0, utc=True) == b"+00:00!\r\n"  # the character right after it
    assert render("%:z%%", 0, utc=True) == b"+00:00%\r\n"
    assert render("%:z%", 0, utc=True).startswith(b"+00:00")  # a lone "%" at the very end
    long = "x" * 300 + "%:z"  # longer than the small integers CPython shares
    assert render(long, 0, utc=True) == b"x" * 300 + b"+00:00\r\n"


@pytest.mark.parametrize(
    ("zone", "offset"),
    [("JST-9", "+09:00"), ("ABC-14:45", "+14:45"), ("ABC+23:59", "-23:59"), ("UTC0", "+00:00")],
)
def test_colon_z_offsets(tz: None, zone: str, offset: str) -> None:
    set_tz(zone)
    assert render("%:z", 0, utc=False) == offset.encode() + b"\r\n"


def test_the_printable_range_is_exactly_space_to_tilde(tz: None, tmp_path: Path) -> None:
    assert render("~ %H", 0, utc=True) == b"~ 00\r\n"
    validate_format("~ %H", utc=True)
    with pytest.raises(FormatError):
        validate_format("%H\x1f", utc=True)
    set_tz(tzif(tmp_path / "us", b"A\x1fB", 0))  # unit separator, just below space
    assert render("%Z", 0, utc=False) == b"A?B\r\n"
    assert render("~%Z~", 0, utc=False) == b"~A?B~\r\n"  # replacing keeps the tilde


def test_validation_renders_in_the_zone_it_will_answer_in(tz: None, tmp_path: Path) -> None:
    set_tz(tzif(tmp_path / "zone", "\u00c4ST".encode(), 3600))
    validate_format("%Z", utc=True)  # rendered as UTC: GMT, fine
    with pytest.raises(FormatError):
        validate_format("%Z", utc=False)  # rendered locally: non-ASCII


def tzif_from(path: Path, until: float, first: bytes, then: bytes) -> str:
    """A TZif file: zone name ``first`` until ``until``, ``then`` after it (offset 0)."""
    names = first + b"\0" + then + b"\0"
    counts = struct.pack(">6l", 0, 0, 0, 1, 2, len(names))
    types = struct.pack(">lBB", 0, 0, 0) + struct.pack(">lBB", 0, 0, len(first) + 1)
    data = struct.pack(">l", int(until)) + b"\1" + types + names
    path.write_bytes(b"TZif" + bytes(16) + counts + data)
    return str(path)


@pytest.mark.parametrize(
    ("month", "first", "then"),
    [(1, "\u00c4ST", "STD"), (12, "STD", "\u00c4ST")],  # non-ASCII in January / in December
)
def test_validation_probes_every_month(
    tz: None, tmp_path: Path, month: int, first: str, then: str
) -> None:
    # The zone's name is outside ASCII only in January 2026, or only from December 2026.
    boundary = time.mktime((2026, 2 if month == 1 else 12, 1, 0, 0, 0, 0, 0, 0))
    set_tz(tzif_from(tmp_path / "zone", boundary, first.encode(), then.encode()))
    assert time.localtime(boundary - 86400 * 40).tm_zone == first
    assert time.localtime(boundary + 86400 * 10).tm_zone == then
    with pytest.raises(FormatError):
        validate_format("%Z", utc=False)


def test_line_cache_follows_the_clock_both_ways() -> None:
    cache = LineCache("%s", utc=True)
    assert cache.line(0.5) == b"0\r\n"  # the very first second is rendered, not the default
    assert LineCache("%s", utc=True).line(1.0) == b"1\r\n"
    big = LineCache("%s", utc=True)
    first = big.line(WHEN + 0.1)
    assert big.line(WHEN + 0.9) is first  # rendered once for the second
    assert big.line(WHEN - 7) == str(int(WHEN) - 7).encode() + b"\r\n"  # the clock went back


def test_a_rendered_line_is_cut_at_max_line() -> None:
    """Whatever the format renders, the line with its CRLF fits MAX_LINE (512) bytes."""
    line = render("%Y" * 200, WHEN, True)  # 800 characters rendered
    assert len(line) == MAX_LINE and line == b"2026" * 127 + b"20\r\n"
    assert render("x" * 510, WHEN, True) == b"x" * 510 + b"\r\n"


def test_format_length_limits() -> None:
    validate_format("%%" * 256, True)  # 512 characters of format, 256 rendered
    with pytest.raises(FormatError, match="longer than 512"):
        validate_format("%%" * 256 + "x", True)
    validate_format("x" * 510, True)  # renders 510 characters: with CRLF, 512
    with pytest.raises(FormatError, match="renders more than 510"):
        validate_format("x" * 511, True)


@pytest.mark.parametrize("second", [0, 1, 2, 1_795_500_000])
def test_invalidate_renders_anew_at_any_second(second: int) -> None:
    """After invalidate() (the zone was read again) the next line is rendered, even in the
    first seconds of 1970, where a machine without a clock wakes up."""
    rendered: list[int] = []

    def source(when: int) -> bytes:
        rendered.append(when)
        return b"line\r\n"

    cache = LineCache("ignored", utc=True, source=source)
    cache.line(second + 0.25)
    cache.line(second + 0.5)
    cache.invalidate()
    cache.line(second + 0.75)
    assert rendered == [second, second]


def test_importing_it_loads_neither_collections_nor_typing(
    lean_import: Callable[[str], None],
) -> None:
    """protocol.py is on the per-connection path: every connection would pay for them."""
    lean_import("daytime_sd.protocol")


# Zones east and west of Greenwich, with and without DST, and a half-hour offset.
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Pacific/Auckland"]
# Every conversion whose text depends on the instant or the zone (glibc's %s reads the
# struct through mktime(3), i.e. as local time: issue 21.10).
EVERY_CONVERSION = (
    "%s %%s %a %A %b %B %c %C %d %D %e %F %g %G %H %I %j %k %l %m %M %p %r %R %S %T %u %U "
    "%V %w %W %x %X %y %Y %z %:z %Z"
)


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.usefixtures("tz")
def test_utc_renders_the_same_instant_in_every_zone(zone: str) -> None:
    set_tz("UTC")
    expected = render(EVERY_CONVERSION, WHEN, True)
    set_tz(zone)
    assert render(EVERY_CONVERSION, WHEN, True) == expected
    assert render("%s", WHEN, True) == b"1795500000\r\n"
    assert render("%s", WHEN, False) == b"1795500000\r\n"  # local time: the same instant
    assert render("%%s", WHEN, True) == b"%s\r\n"  # a literal stays literal
    assert LineCache("%s", utc=True).line(WHEN + 0.7) == b"1795500000\r\n"
    validate_format(EVERY_CONVERSION, True)


def test_epoch_seconds_are_the_second_the_rest_of_the_line_shows() -> None:
    """%s is the second the instant lies in, as gmtime() has it for the other conversions:
    rounded down, also before 1970 (not truncated towards zero); and what follows it stays."""
    assert render("%s %T", -1.5, True) == b"-2 23:59:58\r\n"
    assert render("%s.%:z", WHEN + 0.5, True) == b"1795500000.+00:00\r\n"
