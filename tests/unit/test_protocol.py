"""The pure part: formats, presets, validation, the per-second cache."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator

import pytest

from daytime_sd.protocol import (
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
    assert (
        render(PRESETS["ctime"], WHEN, utc=True)
        == time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(WHEN)).encode() + b"\r\n"
    )
    assert re.fullmatch(
        rb"\w{3} \w{3} \d\d \d\d:\d\d:\d\d \d{4}\r\n", render("%a %b %d %T %Y", WHEN, True)
    )


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


def test_time_zone_names_outside_ascii_are_replaced_at_run_time(tz: None) -> None:
    set_tz("<+03>-3")  # a numeric abbreviation: still ASCII
    assert render("%Z", 0, utc=False) == b"+03\r\n"


def test_line_cache_renders_once_per_second() -> None:
    cache = LineCache("%S", utc=True)
    first = cache.line(100.2)
    assert first == b"40\r\n"
    assert cache.line(100.9) is first
    assert cache.line(101.0) == b"41\r\n"
