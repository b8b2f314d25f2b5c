"""The command-line options: one table of flags, value checks, defaults and help.

The table is the single source: config.py makes the settings and their defaults from it,
``--help`` is written from it, and the man page test reads that help.  A value check
raises ValueError with the reason; config.parse turns it into a usage error.
"""

from __future__ import annotations

import math

from daytime_sd import __version__
from daytime_sd.protocol import DEFAULT_FORMAT

# nist.py's, written here too so that the per-connection path need not import nist.py
# (test_nist checks that they agree).
NIST_DEFAULT_LABEL = "UTC(HOST)"
NIST_LABEL = "UTC(NIST)"

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing is slow to import, mypy honours both
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

PROG = "daytime-sd"
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_MAX_CHILDREN = 64
DEFAULT_LINGER = 2.0
DEFAULT_UDP_RATE = 5
DEFAULT_UDP_TOTAL_RATE = 1000  # udp.py's; see total_rate_for()
# The linger bound is a promise to the client, not a resource: a minute is more than any
# client that means to close needs.  Stopping never waits for it (see lifecycle.py).
MAX_LINGER = 60
MAX_IDLE_TIMEOUT = 86400 * 365


def _ascii_digits(text: str) -> bool:
    """str.isdigit() alone is true for "²" and "١٣", and int() takes " 13", "1_3" and "١٣":
    an option value is plain ASCII digits or nothing."""
    return text.isascii() and text.isdigit()


def _int(low: int, high: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        if not _ascii_digits(text.removeprefix("-")):
            raise ValueError("not a whole number")
        value = int(text, 10)
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")
        return value

    return convert


def _seconds(high: int) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("not a number of seconds") from None
        if not math.isfinite(value) or value < 0 or value > high:
            raise ValueError(f"must be from 0 to {high} seconds")
        return value

    return convert


def _port(text: str) -> str:
    if not text or (_ascii_digits(text) and not 1 <= int(text) <= 65535):
        raise ValueError("must be a port number from 1 to 65535 or a service name")
    # Service names as /etc/services has them: ASCII letters, digits, '-' and '_'.
    if not _ascii_digits(text) and not (
        text.isascii() and all(c.isalnum() or c in "-_" for c in text)
    ):
        raise ValueError("must be a port number or a service name such as 'daytime'")
    return text


def _host(text: str) -> str:
    if not text or "\0" in text or len(text) > 255:
        raise ValueError("must be a host name or an IPv4/IPv6 address")
    host = text.strip("[]") if text.startswith("[") and text.endswith("]") else text
    try:
        # What listeners.resolve() will do with a non-ASCII name (ASCII is passed as is):
        # an empty or over-long label, or an argv byte that is not UTF-8, raises
        # UnicodeError there (a traceback), not gaierror.
        if not host.isascii():
            host.encode("idna")
    except UnicodeError:
        raise ValueError("must be a host name or an IPv4/IPv6 address") from None
    return host


def _choice(options: Sequence[str]) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text.lower() not in options:
            raise ValueError("must be one of " + ", ".join(options))
        return text.lower()

    return convert


def _text(text: str) -> str:
    if "\0" in text:
        raise ValueError("must not contain NUL")
    return text


def _label(text: str) -> str:
    from daytime_sd.nist import check_label  # only when the option is given

    return check_label(text)


class Option:
    """One command-line option: its flag, where it goes and how its value is checked."""

    __slots__ = ("const", "convert", "default", "dest", "flag", "help", "metavar", "repeat")

    def __init__(
        self,
        flag: str,
        dest: str,
        help: str,
        metavar: str | None = None,  # None: a switch that takes no value
        convert: Callable[[str], object] | None = None,
        default: object = None,
        const: object = True,
        repeat: bool = False,
    ) -> None:
        self.flag = flag
        self.default = default
        self.dest = dest
        self.help = help
        self.metavar = metavar
        self.convert = convert
        self.const = const
        self.repeat = repeat


OPTIONS: tuple[Option, ...] = (
    Option(
        "--listen",
        "listen",
        "address or host name to listen on when standalone; repeatable "
        "(default: every address, 0.0.0.0 and ::)",
        "HOST",
        _host,
        default=(),
        repeat=True,
    ),
    Option(
        "--port",
        "port",
        "port number or service name when standalone (default: daytime, 13)",
        "PORT",
        _port,
        default="daytime",
    ),
    Option(
        "--backlog",
        "backlog",
        "listen(2) backlog when standalone (default: SOMAXCONN)",
        "N",
        _int(1, 65535),
    ),
    Option(
        "--udp", "udp", "standalone: also answer UDP datagrams on the same addresses", default=False
    ),
    Option(
        "--format",
        "format",
        "answer format: ctime (default), rfc867, rfc2822, iso8601, nist, or a strftime(3) string",
        "FMT",
        _text,
        default=DEFAULT_FORMAT,
    ),
    Option(
        "--utc", "utc", "render UTC instead of local time (local time honours TZ)", default=False
    ),
    Option(
        "--nist-label",
        "nist_label",
        f"--format nist: the label field (default: {NIST_DEFAULT_LABEL}; {NIST_LABEL} claims "
        "the time comes from NIST)",
        "LABEL",
        _label,
        default=NIST_DEFAULT_LABEL,
    ),
    Option(
        "--require-sync",
        "require_sync",
        "answer only while the kernel says the clock is synchronized (TCP: close with no "
        "line; UDP: no reply)",
        default=False,
    ),
    Option("--fork", "fork", "fork a child per TCP connection (default when standalone)"),
    Option(
        "--no-fork",
        "fork",
        "answer in the server process (default when socket-activated)",
        const=False,
    ),
    Option(
        "--max-children",
        "max_children",
        "fork mode: at most N children at once; further "
        f"connections wait in the backlog (default: {DEFAULT_MAX_CHILDREN})",
        "N",
        _int(1, 65535),
        default=DEFAULT_MAX_CHILDREN,
    ),
    Option(
        "--idle-timeout",
        "idle_timeout",
        "socket-activated: exit after SECONDS without a "
        "connection; systemd starts it again on the next one (default: 0, never)",
        "SECONDS",
        _seconds(MAX_IDLE_TIMEOUT),
        default=0.0,
    ),
    Option(
        "--linger",
        "linger",
        "after answering, read and discard client input for at most "
        f"SECONDS (0 to {MAX_LINGER}) before closing (default: {DEFAULT_LINGER:g})",
        "SECONDS",
        _seconds(MAX_LINGER),
        default=DEFAULT_LINGER,
    ),
    Option(
        "--udp-rate",
        "udp_rate",
        "UDP: answer at most N datagrams per source address per "
        f"second (default: {DEFAULT_UDP_RATE})",
        "N",
        _int(1, 1_000_000),
        default=DEFAULT_UDP_RATE,
    ),
    Option(
        "--udp-total-rate",
        "udp_total_rate",
        "UDP: answer at most N datagrams per second over all sources (default: "
        f"{DEFAULT_UDP_TOTAL_RATE}, or --udp-rate if higher)",
        "N",
        _int(1, 1_000_000),
    ),
    Option(
        "--user",
        "user",
        "standalone as root: after binding, drop to USER and its groups",
        "USER",
        _text,
    ),
    Option(
        "--log-connections",
        "log_connections",
        "log one line per connection with the remote address",
        default=False,
    ),
    Option(
        "--log-level",
        "log_level",
        "debug, info (default), warning or error",
        "LEVEL",
        _choice(LOG_LEVELS),
        default="info",
    ),
    Option("--version", "version", "print the version and exit"),
    Option("--help", "help", "print this help and exit"),
)
# Settings that are not options of their own.
_BY_FLAG = {option.flag: option for option in OPTIONS}


def help_text() -> str:
    lines = [
        f"usage: {PROG} [OPTION]...",
        "",
        "RFC 867 Daytime service.  Serves the sockets systemd (or inetd) passes in;",
        "otherwise listens itself and forks per connection.",
        "",
        "options:",
    ]
    for option in OPTIONS:
        head = option.flag + (f" {option.metavar}" if option.metavar else "")
        lines.append(f"  {head:<24}{option.help}" if len(head) < 24 else f"  {head}")
        if len(head) >= 24:
            lines.append(f"  {'':<24}{option.help}")
    lines.append("")
    lines.append(f"See daytime-sd(8).  Version {__version__}.")
    return "\n".join(lines) + "\n"
