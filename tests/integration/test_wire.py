# SPDX-License-Identifier: MIT
"""Issue 13: what a client receives, checked on the wire in every serving mode.

1. The answer is the *current* time (within a second of the test's own clock, allowing for
   a second boundary), for every preset, a custom strftime format, ``--utc`` and a ``TZ``
   with a non-zero offset, as printable ASCII ending in CRLF.  The expected line is
   built here from the test's own clock with ``datetime`` and literal day and month names,
   never with the product's formats or ``strftime``.
2. The clean close: a client that writes before reading and goes on writing after it has
   read the line sees the whole line, EOF, and never a reset (ECONNRESET/EPIPE).  Linux
   answers ``close()`` with unread input by RST, so this fails when the server stops
   lingering or draining.

Modes: Accept=no in-process and fork (standalone), Accept=yes and inetd ``nowait`` through
the real systemd-socket-activate (inetd with the client on fds 0, 1 and 2, as inetd passes
it), and UDP (socket-activated, standalone ``--udp``, and inetd ``dgram`` on fd 0).
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from .support import CTIME, LINE, PYTHON, REPO, base_env, free_port, query, read_to_eof, service

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]  # fmt: skip
CUSTOM = "%d/%m/%y %I:%M:%S %p %Z|%j|%%"  # 12-hour clock, AM/PM, zone name, day of the year
INETD_012 = ["sh", "-c", 'exec "$@" 2>&1', "sh"]  # the client on fds 0, 1 and 2, as inetd does


def expected(kind: str, second: int, offset: timedelta, zone: str) -> bytes:
    """The line for ``second`` in a zone ``offset`` from UTC named ``zone``: the oracle."""
    t = datetime.fromtimestamp(second, UTC) + offset  # wall-clock fields there
    day, month = DAYS[t.weekday()], MONTHS[t.month - 1]
    hms = f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hh, mm = divmod(abs(minutes), 60)
    if kind == "ctime":
        text = f"{day[:3]} {month[:3]} {t.day:02d} {hms} {t.year}"
    elif kind == "rfc867":
        text = f"{day}, {month} {t.day:02d}, {t.year} {hms}-{zone}"
    elif kind == "rfc2822":
        text = f"{day[:3]}, {t.day:02d} {month[:3]} {t.year} {hms} {sign}{hh:02d}{mm:02d}"
    elif kind == "iso8601":
        text = f"{t.year}-{t.month:02d}-{t.day:02d}T{hms}{sign}{hh:02d}:{mm:02d}"
    else:
        assert kind == "custom"
        hour12 = (t.hour % 12) or 12
        ampm = "AM" if t.hour < 12 else "PM"
        yday = t.timetuple().tm_yday
        text = (
            f"{t.day:02d}/{t.month:02d}/{t.year % 100:02d} {hour12:02d}:{t.minute:02d}:"
            f"{t.second:02d} {ampm} {zone}|{yday:03d}|%"
        )
    return text.encode("ascii") + b"\r\n"


# (id, arguments, TZ, which oracle, offset from UTC, zone name).  POSIX TZ offsets are west
# of Greenwich: "XYZ+3:30" is UTC-03:30.
CASES = [
    ("ctime-JST", [], "JST-9", "ctime", timedelta(hours=9), "JST"),
    ("rfc867-JST", ["--format", "rfc867"], "JST-9", "rfc867", timedelta(hours=9), "JST"),
    ("rfc2822-XYZ", ["--format", "rfc2822"], "XYZ+3:30", "rfc2822", -timedelta(hours=3.5), "XYZ"),
    ("iso8601-NPT", ["--format=iso8601"], "NPT-5:45", "iso8601", timedelta(hours=5.75), "NPT"),
    ("custom-PST", ["--format", CUSTOM], "PST8", "custom", -timedelta(hours=8), "PST"),
    ("utc-ctime", ["--utc"], "JST-9", "ctime", timedelta(0), "GMT"),
    ("utc-iso8601", ["--utc", "--format", "iso8601"], "JST-9", "iso8601", timedelta(0), "GMT"),
    ("utc-rfc2822", ["--format", "rfc2822", "--utc"], "XYZ+3:30", "rfc2822", timedelta(0), "GMT"),
]


def assert_current(line: bytes, before: float, after: float, case: tuple[object, ...]) -> None:
    """``line`` is the time at some second from ``before`` to ``after`` (±1 s), exactly."""
    _id, _args, _tz, kind, offset, zone = case
    assert isinstance(kind, str) and isinstance(offset, timedelta) and isinstance(zone, str)
    assert LINE.match(line), line  # printable ASCII, CRLF
    seconds = range(int(before) - 1, int(after) + 2)
    candidates = {expected(kind, s, offset, zone) for s in seconds}
    assert line in candidates, (line, sorted(candidates))


# -- how each mode is started and asked -------------------------------------------------------


def udp_ask(port: int, timeout: float = 10.0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))  # an ephemeral port: never below 1024
        for _ in range(int(timeout / 0.5)):
            sock.sendto(b"what time is it?", ("127.0.0.1", port))
            sock.settimeout(0.5)
            try:
                return sock.recv(65535)
            except TimeoutError:
                continue  # the first datagram starts the service; retry as UDP clients do
    raise AssertionError(f"no UDP answer from port {port} within {timeout} s")


@contextmanager
def inetd_dgram(args: list[str], env: dict[str, str]) -> Iterator[int]:
    """inetd ``dgram wait``: the bound UDP socket is the service's fds 0, 1 and 2."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        proc = subprocess.Popen(
            [PYTHON, "-m", "daytime_sd", *args], env=base_env(**env), cwd=REPO,
            stdin=sock.fileno(), stdout=sock.fileno(), stderr=sock.fileno(),
        )  # fmt: skip
        try:
            yield port
        finally:
            proc.terminate()
            assert proc.wait(15) == 0


@contextmanager
def asking(mode: str, args: list[str], env: dict[str, str]) -> Iterator[Callable[[], bytes]]:
    """The service in ``mode``; yields a function that asks it once and returns the answer."""
    port = free_port()
    loopback = f"127.0.0.1:{port}"
    if mode == "udp-inetd":
        with inetd_dgram(args, env) as udp_port:
            yield lambda: udp_ask(udp_port)
        return
    if mode == "fork":
        argv = ["--listen", "127.0.0.1", "--port", str(port), "--fork", *args]
        with service(argv, env=env):
            yield lambda: query("127.0.0.1", port)
        return
    if mode == "udp-standalone":
        with service(["--listen", "127.0.0.1", "--port", str(port), "--udp", *args], env=env):
            yield lambda: udp_ask(port)
        return
    activate, inner = {
        "in-process": (["-l", loopback], []),
        "accept": (["--accept", "-l", loopback], []),
        "inetd": (["--accept", "--inetd", "-l", loopback], INETD_012),
        "udp": (["--datagram", "-l", loopback], []),
    }[mode]
    with service(args, activate=activate, env=env, inner=inner):
        yield (lambda: udp_ask(port)) if mode == "udp" else (lambda: query("127.0.0.1", port))


TCP_MODES = ["in-process", "fork", "accept", "inetd"]
ALL_MODES = [*TCP_MODES, "udp", "udp-standalone", "udp-inetd"]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("mode", ALL_MODES)
def test_the_answer_is_the_current_time_in_the_asked_format(
    mode: str, case: tuple[object, ...]
) -> None:
    _id, args, tz, *_ = case
    assert isinstance(args, list) and isinstance(tz, str)
    with asking(mode, args, {"TZ": tz}) as ask:
        for _ in range(2):  # the first answer may come from a service it just started
            before = time.time()
            line = ask()
            assert_current(line, before, time.time(), case)


def test_the_oracle_itself() -> None:
    """The expected lines, for a fixed moment, against literals worked out by hand."""
    when = 1_795_500_000  # Tue 2026-11-24 06:00:00 UTC
    jst, npt = timedelta(hours=9), timedelta(hours=5, minutes=45)
    assert expected("ctime", when, jst, "JST") == b"Tue Nov 24 15:00:00 2026\r\n"
    assert expected("rfc867", when, jst, "JST") == b"Tuesday, November 24, 2026 15:00:00-JST\r\n"
    assert expected("rfc2822", when, -timedelta(hours=3.5), "X") == (
        b"Tue, 24 Nov 2026 02:30:00 -0330\r\n"
    )
    assert expected("iso8601", when, npt, "NPT") == b"2026-11-24T11:45:00+05:45\r\n"
    assert expected("custom", when, -timedelta(hours=8), "PST") == (
        b"23/11/26 10:00:00 PM PST|327|%\r\n"
    )


# -- the clean close --------------------------------------------------------------------------


def talkative_client(port: int, first: int) -> bytes:
    """Write ``first`` bytes, read the line to EOF, keep writing, then close.

    Raises ConnectionResetError or BrokenPipeError on any reset.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        # What it writes piles up at the server's end, unread until the server drains it.
        if first:
            sock.sendall(b"x" * first)
        data = read_to_eof(sock)  # ECONNRESET here: the line was destroyed by a reset
        end = time.monotonic() + 0.6
        sent = 0
        while time.monotonic() < end:
            # The server has our earlier bytes unread if it stopped draining: closing then
            # makes its kernel answer these with RST, and the next send raises EPIPE or
            # ECONNRESET.
            sock.sendall(b"still talking\r\n" * 256)
            sent += 1
            time.sleep(0.02)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b""  # still EOF, not ECONNRESET
        assert sent >= 5
    return data


@pytest.mark.parametrize("mode", TCP_MODES)
def test_a_talkative_client_gets_the_whole_line_eof_and_no_reset(mode: str) -> None:
    port = free_port()
    loopback = f"127.0.0.1:{port}"
    args = ["--linger", "10"]  # the bound is not what is tested: a slow machine stays inside
    with (
        service(["--listen", "127.0.0.1", "--port", str(port), "--fork", *args])
        if mode == "fork"
        else service(
            args,
            activate={
                "in-process": ["-l", loopback],
                "accept": ["--accept", "-l", loopback],
                "inetd": ["--accept", "--inetd", "-l", loopback],
            }[mode],
            inner=INETD_012 if mode == "inetd" else [],
        )
    ) as svc:
        for first in (72 << 10, 1 << 20, 0):  # 72 KiB, a mebibyte, nothing before reading
            data = talkative_client(port, first)
            assert CTIME.match(data), data  # the whole line, and nothing else before EOF
        assert svc.proc.poll() is None
        assert "Traceback" not in svc.stderr
