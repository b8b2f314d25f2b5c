# SPDX-License-Identifier: MIT
"""argv → Config: the options, their values checked, and the settings, with nothing opened.

One table (OPTIONS) is the single source: the settings and their defaults are made from it,
``--help`` is written from it, and the man page test reads that help.  A small table-driven
parser instead of argparse: the per-connection path (Accept=yes, inetd ``nowait``) starts a
new interpreter for every client, and argparse (with gettext and re behind it) costs more
to import than the whole answer (bench/ output, "Import costs"); the same figure keeps
``typing`` out (TYPE_CHECKING below is the stand-in mypy honours).
"""

from __future__ import annotations

import math

from daytime_sd import __version__
from daytime_sd.protocol import DEFAULT_FORMAT, NIST_FORMAT, PRESETS, FormatError, validate_format

# The per-connection path: typing.TYPE_CHECKING would import typing (bench/ "Import costs").
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


# -- one value: each check turns an argument into the value a setting holds, or raises
# -- ValueError with the reason, which parse() turns into a usage error


def _ascii_digits(text: str) -> bool:
    """str.isdigit() alone is true for "²" and "١٣", and int() takes " 13", "1_3" and "١٣":
    an option value is plain ASCII digits or nothing."""
    return text.isascii() and text.isdigit()


def integer(low: int, high: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        if not _ascii_digits(text.removeprefix("-")):
            raise ValueError("not a whole number")
        value = int(text, 10)
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")
        return value

    return convert


def seconds(high: int) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("not a number of seconds") from None
        if not math.isfinite(value) or value < 0 or value > high:
            raise ValueError(f"must be from 0 to {high} seconds")
        return value

    return convert


def port(text: str) -> str:
    if not text or (_ascii_digits(text) and not 1 <= int(text) <= 65535):
        raise ValueError("must be a port number from 1 to 65535 or a service name")
    # Service names as /etc/services has them: ASCII letters, digits, '-' and '_'.
    if not _ascii_digits(text) and not (
        text.isascii() and all(c.isalnum() or c in "-_" for c in text)
    ):
        raise ValueError("must be a port number or a service name such as 'daytime'")
    return text


def host(text: str) -> str:
    if not text or "\0" in text or len(text) > 255:
        raise ValueError("must be a host name or an IPv4/IPv6 address")
    name = text.strip("[]") if text.startswith("[") and text.endswith("]") else text
    try:
        # What listeners.resolve() will do with a non-ASCII name (ASCII is passed as is):
        # an empty or over-long label, or an argv byte that is not UTF-8, raises
        # UnicodeError there (a traceback), not gaierror.
        if not name.isascii():
            name.encode("idna")
    except UnicodeError:
        raise ValueError("must be a host name or an IPv4/IPv6 address") from None
    return name


def choice(options: Sequence[str]) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text.lower() not in options:
            raise ValueError("must be one of " + ", ".join(options))
        return text.lower()

    return convert


def text(text: str) -> str:
    if "\0" in text:
        raise ValueError("must not contain NUL")
    return text


def label(text: str) -> str:
    from daytime_sd.nist import check_label  # only when the option is given

    return check_label(text)


# -- the options: flags, value checks, defaults and help

# nist.py's, written here too so that the per-connection path need not import nist.py
# (test_nist checks that they agree).
NIST_DEFAULT_LABEL = "UTC(HOST)"
NIST_LABEL = "UTC(NIST)"

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
        host,
        default=(),
        repeat=True,
    ),
    Option(
        "--port",
        "port",
        "port number or service name when standalone (default: daytime, 13)",
        "PORT",
        port,
        default="daytime",
    ),
    Option(
        "--backlog",
        "backlog",
        "listen(2) backlog when standalone (default: SOMAXCONN)",
        "N",
        integer(1, 65535),
    ),
    Option(
        "--udp", "udp", "standalone: also answer UDP datagrams on the same addresses", default=False
    ),
    Option(
        "--format",
        "format",
        "answer format: ctime (default), rfc867, rfc2822, iso8601, nist, or a strftime(3) string",
        "FMT",
        text,
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
        label,
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
        integer(1, 65535),
        default=DEFAULT_MAX_CHILDREN,
    ),
    Option(
        "--idle-timeout",
        "idle_timeout",
        "socket-activated: exit after SECONDS without a "
        "connection; systemd starts it again on the next one (default: 0, never)",
        "SECONDS",
        seconds(MAX_IDLE_TIMEOUT),
        default=0.0,
    ),
    Option(
        "--linger",
        "linger",
        "after answering, read and discard client input for at most "
        f"SECONDS (0 to {MAX_LINGER}) before closing (default: {DEFAULT_LINGER:g})",
        "SECONDS",
        seconds(MAX_LINGER),
        default=DEFAULT_LINGER,
    ),
    Option(
        "--udp-rate",
        "udp_rate",
        "UDP: answer at most N datagrams per source address per "
        f"second (default: {DEFAULT_UDP_RATE})",
        "N",
        integer(1, 1_000_000),
        default=DEFAULT_UDP_RATE,
    ),
    Option(
        "--udp-total-rate",
        "udp_total_rate",
        "UDP: answer at most N datagrams per second over all sources (default: "
        f"{DEFAULT_UDP_TOTAL_RATE}, or --udp-rate if higher)",
        "N",
        integer(1, 1_000_000),
    ),
    Option(
        "--user",
        "user",
        "standalone as root: after binding, drop to USER and its groups",
        "USER",
        text,
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
        choice(LOG_LEVELS),
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


# -- the settings, parsed


class UsageError(Exception):
    """A bad option or value: exit status 2."""


class Exit(Exception):
    """--help or --version: print ``text`` and exit 0."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


_DERIVED: dict[str, object] = {"given": frozenset()}
_ACTIONS = ("help", "version")  # options that act instead of setting something
_DEFAULTS: dict[str, object] = {
    **{o.dest: o.default for o in OPTIONS if o.dest not in _ACTIONS},
    **_DERIVED,
}


class Config:
    """Every setting, defaulted; filled in by :func:`parse`, and read-only after it returns.

    The attribute types are declared here for the type checker; names, defaults, flags and
    help come from OPTIONS alone (the slots and the defaults are made from it below, and a
    unit test checks the two agree).  A plain class, not a dataclass: ``dataclasses``
    imports ``inspect``, which the per-connection path would pay for on every connection.
    """

    listen: tuple[str, ...]
    port: str
    backlog: int | None  # None: socket.SOMAXCONN, resolved where sockets are made
    udp: bool
    format: str  # after parse(): a strftime string, presets resolved
    utc: bool
    nist_label: str
    require_sync: bool
    fork: bool | None  # None: fork when standalone, in-process when activated
    max_children: int
    idle_timeout: float
    linger: float
    udp_rate: int
    udp_total_rate: int | None  # None: udp.total_rate_for() decides from udp_rate
    user: str | None
    log_connections: bool
    log_level: str
    given: frozenset[str]  # the options named on the command line

    __slots__ = tuple(_DEFAULTS)

    def __init__(self, **values: object) -> None:
        for dest, default in _DEFAULTS.items():
            setattr(self, dest, values.pop(dest, default))
        if values:
            raise TypeError(f"unknown settings: {', '.join(values)}")

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in _DEFAULTS)
        return f"Config({fields})"


def _lookup(flag: str) -> Option:
    """The option named exactly ``flag``.

    getopt_long(3) and argparse also take any unambiguous prefix (``--max``).  We do not:
    an abbreviation in an admin's ``ExecStart=`` line would become ambiguous, and a usage
    error, the day a later version adds an option with the same prefix.
    """
    option = _BY_FLAG.get(flag)
    if option is None:
        raise UsageError(f"unknown option {flag}")
    return option


def parse(argv: Sequence[str]) -> Config:
    """Parse the arguments after the program name.  Raises UsageError or Exit."""
    values: dict[str, object] = {}
    listen: list[object] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            if i < len(args):
                raise UsageError(f"unexpected argument {args[i]!r}")
            break
        if not arg.startswith("--") or arg == "--":
            raise UsageError(f"unexpected argument {arg!r}")
        flag, eq, inline = arg.partition("=")
        option = _lookup(flag)
        if option.metavar is None:
            if eq:
                raise UsageError(f"option {option.flag} takes no value")
            values[option.dest] = option.const
            continue
        if eq:
            text = inline
        elif i < len(args):
            text = args[i]
            i += 1
        else:
            raise UsageError(f"option {option.flag} needs a value ({option.metavar})")
        assert option.convert is not None
        try:
            value = option.convert(text)
        except ValueError as err:
            raise UsageError(f"{option.flag} {text!r}: {err}") from None
        if option.repeat:
            listen.append(value)
        else:
            values[option.dest] = value
    if values.pop("help", False):
        raise Exit(help_text())
    if values.pop("version", False):
        raise Exit(f"{PROG} {__version__}\n")
    if listen:
        values["listen"] = tuple(dict.fromkeys(listen))
    config = Config(given=frozenset(values))
    for dest, value in values.items():
        setattr(config, dest, value)
    preset = PRESETS.get(config.format)
    if config.format == NIST_FORMAT:
        pass  # not strftime: nist.py lays it out, always in UTC
    elif preset is not None:
        # The presets are checked by the test suite in every zone it knows; rendering them
        # 36 times here would be paid on every connection of the per-connection path.
        config.format = preset
    else:
        try:
            validate_format(config.format, config.utc)
        except FormatError as err:
            raise UsageError(f"--format: {err}") from None
    return config
