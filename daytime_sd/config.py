# SPDX-License-Identifier: MIT
"""argv → Config: the command line, parsed and checked, with nothing opened yet.

A small table-driven parser (the table is options.py) instead of argparse: the
per-connection path (Accept=yes, inetd ``nowait``) starts a new interpreter for every
client, and argparse (with gettext and re behind it) costs more to import than the whole
answer (bench/: Import costs).
"""

from __future__ import annotations

from daytime_sd import __version__
from daytime_sd.options import _BY_FLAG, OPTIONS, PROG, Option, help_text
from daytime_sd.protocol import NIST_FORMAT, PRESETS, FormatError, validate_format

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing is slow to import, mypy honours both
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["OPTIONS", "Config", "Exit", "Option", "UsageError", "help_text", "parse"]


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
