# SPDX-License-Identifier: MIT
"""The command-line options: one table of flags, value checks, defaults and help.

The table is the single source: config.py makes the settings and their defaults from it,
``--help`` is written from it, and the man page test reads that help.  The value checks
themselves are values.py's.
"""

from __future__ import annotations

from daytime_sd import __version__, values
from daytime_sd.protocol import DEFAULT_FORMAT

# nist.py's, written here too so that the per-connection path need not import nist.py
# (test_nist checks that they agree).
NIST_DEFAULT_LABEL = "UTC(HOST)"
NIST_LABEL = "UTC(NIST)"

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing is slow to import, mypy honours both
if TYPE_CHECKING:
    from collections.abc import Callable

PROG = "daytime-sd"
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_MAX_CHILDREN = 64
DEFAULT_LINGER = 2.0
DEFAULT_UDP_RATE = 5
DEFAULT_UDP_TOTAL_RATE = 1000  # udp.py's; see total_rate_for()
# The linger bound is a promise to the client, not a resource: a minute is more than any
# client that means to close needs.  Stopping never waits for it (server.py: STOP_WAIT).
MAX_LINGER = 60
MAX_IDLE_TIMEOUT = 86400 * 365


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
        values.host,
        default=(),
        repeat=True,
    ),
    Option(
        "--port",
        "port",
        "port number or service name when standalone (default: daytime, 13)",
        "PORT",
        values.port,
        default="daytime",
    ),
    Option(
        "--backlog",
        "backlog",
        "listen(2) backlog when standalone (default: SOMAXCONN)",
        "N",
        values.integer(1, 65535),
    ),
    Option(
        "--udp", "udp", "standalone: also answer UDP datagrams on the same addresses", default=False
    ),
    Option(
        "--format",
        "format",
        "answer format: ctime (default), rfc867, rfc2822, iso8601, nist, or a strftime(3) string",
        "FMT",
        values.text,
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
        values.label,
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
        values.integer(1, 65535),
        default=DEFAULT_MAX_CHILDREN,
    ),
    Option(
        "--idle-timeout",
        "idle_timeout",
        "socket-activated: exit after SECONDS without a "
        "connection; systemd starts it again on the next one (default: 0, never)",
        "SECONDS",
        values.seconds(MAX_IDLE_TIMEOUT),
        default=0.0,
    ),
    Option(
        "--linger",
        "linger",
        "after answering, read and discard client input for at most "
        f"SECONDS (0 to {MAX_LINGER}) before closing (default: {DEFAULT_LINGER:g})",
        "SECONDS",
        values.seconds(MAX_LINGER),
        default=DEFAULT_LINGER,
    ),
    Option(
        "--udp-rate",
        "udp_rate",
        "UDP: answer at most N datagrams per source address per "
        f"second (default: {DEFAULT_UDP_RATE})",
        "N",
        values.integer(1, 1_000_000),
        default=DEFAULT_UDP_RATE,
    ),
    Option(
        "--udp-total-rate",
        "udp_total_rate",
        "UDP: answer at most N datagrams per second over all sources (default: "
        f"{DEFAULT_UDP_TOTAL_RATE}, or --udp-rate if higher)",
        "N",
        values.integer(1, 1_000_000),
    ),
    Option(
        "--user",
        "user",
        "standalone as root: after binding, drop to USER and its groups",
        "USER",
        values.text,
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
        values.choice(LOG_LEVELS),
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
