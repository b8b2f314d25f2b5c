# SPDX-License-Identifier: MIT
"""RFC 867 answers: a point in time in, one CRLF-terminated ASCII line out.

Pure functions only; the sockets live elsewhere.  Rendering goes through ``time.strftime``
(the C library), and Python never sets ``LC_TIME`` from the environment, so day and month
names are the C locale's English ones whatever the host locale is.
"""

from __future__ import annotations

import time

# The per-connection path: typing.TYPE_CHECKING would import typing (bench/ "Import costs").
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

PRESETS: dict[str, str] = {
    # The seed's line, "%a %b %d %T %Y": "Tue Nov 04 06:05:00 2026".  ctime(3) pads the day
    # with a space; the seed padded it with a zero, and its clients keep seeing that.
    "ctime": "%a %b %d %H:%M:%S %Y",
    # RFC 867's own example: "Tuesday, February 22, 1982 17:37:43-PST".
    "rfc867": "%A, %B %d, %Y %H:%M:%S-%Z",
    # Internet Message Format date: "Tue, 24 Nov 2026 06:05:00 +0000".
    "rfc2822": "%a, %d %b %Y %H:%M:%S %z",
    # ISO 8601 extended form with a colon in the offset: "2026-11-24T06:05:00+00:00".
    "iso8601": "%Y-%m-%dT%H:%M:%S%:z",
}
# NIST's daytime layout (nist.py): not a strftime string, it also says how good the
# clock is, so it is rendered by clock.ClockSync from the kernel's state.
NIST_FORMAT = "nist"
DEFAULT_FORMAT = "ctime"
CRLF = b"\r\n"
# RFC 867 sets no length.  We cap the line, CRLF included, so that a --format of any size
# cannot make an answer that does not fit one small datagram or one segment.
MAX_LINE = 512

# Moments used to validate a format: every weekday and month name, AM and PM, both a
# single- and a double-digit day, so a format that can render non-ASCII shows it at startup.
_PROBES = tuple(
    time.mktime((2026, month, day, hour, 5, 9, 0, 0, -1))
    for month in range(1, 13)
    for day, hour in ((1, 3), (17, 15), (28, 23))
)


class FormatError(ValueError):
    """A --format value that cannot produce a valid Daytime line."""


def resolve_format(spec: str) -> str:
    """Turn a preset name or strftime string into a strftime string."""
    return PRESETS.get(spec, spec)


def _utc_offset(tm: time.struct_time) -> str:
    offset = tm.tm_gmtoff or 0
    sign = "-" if offset < 0 else "+"
    minutes = abs(offset) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _expand(fmt: str, tm: time.struct_time, when: float) -> str:
    """Expand the two conversions we render ourselves; leave every other one to strftime.

    ``%:z`` (the GNU offset with a colon) is missing from C strftime.  ``%s`` (seconds since
    the epoch) is glibc's, and glibc computes it with mktime(3), which reads the struct as
    *local* time: under ``--utc`` it would be off by the zone's offset.  The instant is
    ``when`` itself, so it is written from that in every mode.
    """
    if "%:z" not in fmt and "%s" not in fmt:
        return fmt
    # Walk the conversions so that "%%s" stays a literal "%s" (no re: it is slow to import).
    out: list[str] = []
    i = 0
    while i < len(fmt):
        if fmt.startswith("%:z", i):
            out.append(_utc_offset(tm))
            i += 3
        elif fmt.startswith("%s", i):
            out.append(str(int(when // 1)))
            i += 2
        elif fmt[i] == "%":
            out.append(fmt[i : i + 2])
            i += 2
        else:
            out.append(fmt[i])
            i += 1
    return "".join(out)


def render(fmt: str, when: float, utc: bool) -> bytes:
    """Render one answer line for the time ``when`` (seconds since the epoch).

    Anything outside printable ASCII that a time zone name could still bring in at run
    time is replaced by ``?``: a client must never receive bytes the RFC does not allow.
    """
    tm = time.gmtime(when) if utc else time.localtime(when)
    text = time.strftime(_expand(fmt, tm, when), tm)
    data = text.encode("ascii", "replace")[: MAX_LINE - 2]
    if not _printable(data):
        data = bytes(b if 0x20 <= b < 0x7F else 0x3F for b in data)
    return data + CRLF


def _printable(data: bytes) -> bool:
    return all(0x20 <= b < 0x7F for b in data)


def validate_format(fmt: str, utc: bool) -> None:
    """Reject a format that is empty or can render anything but printable ASCII."""
    if not fmt:
        raise FormatError("the format is empty")
    if len(fmt) > MAX_LINE:  # before rendering: a huge format must not cost 36 huge renders
        raise FormatError(f"the format is longer than {MAX_LINE} characters")
    for when in _PROBES:
        tm = time.gmtime(when) if utc else time.localtime(when)
        text = time.strftime(_expand(fmt, tm, when), tm)
        if not text.strip():
            raise FormatError(f"format {fmt!r} renders an empty line")
        try:
            data = text.encode("ascii")
        except UnicodeEncodeError:
            raise FormatError(f"format {fmt!r} renders non-ASCII text ({text!r})") from None
        if not _printable(data):
            raise FormatError(f"format {fmt!r} renders control characters ({text!r})")
        if len(data) > MAX_LINE - 2:
            raise FormatError(f"format {fmt!r} renders more than {MAX_LINE - 2} characters")


class LineCache:
    """The answer changes once a second at most, so render it once a second at most.

    The in-process server answers tens of thousands of connections a second; strftime and
    localtime on each of them would be most of its work.
    """

    __slots__ = ("_fmt", "_line", "_second", "_source", "_utc")

    def __init__(self, fmt: str, utc: bool, source: Callable[[int], bytes] | None = None) -> None:
        self._fmt = fmt
        self._utc = utc
        self._source = source  # renders instead of strftime (sync.py: NIST, --require-sync)
        self._second = -1
        self._line = b""

    def invalidate(self) -> None:
        """Render anew on the next call (the time zone was read again)."""
        self._second = -1

    def line(self, when: float) -> bytes:
        second = int(when)
        if second != self._second:
            source = self._source
            self._line = render(self._fmt, second, self._utc) if source is None else source(second)
            self._second = second
        return self._line
