# SPDX-License-Identifier: MIT
"""Command-line parsing: defaults, every option, and the errors (exit status 2 material)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from daytime_sd import __version__, config
from daytime_sd.config import OPTIONS, Exit, Option, UsageError, help_text, parse
from daytime_sd.protocol import PRESETS


def test_defaults() -> None:
    cfg = parse([])
    assert cfg.listen == ()
    assert cfg.port == "daytime"
    assert cfg.backlog is None
    assert cfg.format == PRESETS["ctime"]
    assert cfg.fork is None
    assert (cfg.udp, cfg.utc, cfg.log_connections) == (False, False, False)
    assert cfg.idle_timeout == 0
    assert cfg.linger == 2.0
    assert cfg.max_children == 64
    assert cfg.udp_rate == 5
    assert cfg.log_level == "info"
    assert cfg.user is None
    assert cfg.given == frozenset()


def test_every_option() -> None:
    cfg = parse([
        "--listen", "127.0.0.1", "--listen=[::1]", "--listen", "127.0.0.1", "--port", "1313",
        "--backlog", "16", "--udp", "--format", "iso8601", "--utc", "--no-fork",
        "--max-children", "3", "--idle-timeout", "1.5", "--linger", "0.25", "--udp-rate", "9",
        "--user", "nobody", "--log-connections", "--log-level", "DEBUG",
    ])  # fmt: skip
    assert cfg.listen == ("127.0.0.1", "::1")  # brackets stripped, duplicates dropped
    assert cfg.port == "1313"
    assert cfg.backlog == 16
    assert cfg.udp and cfg.utc and cfg.log_connections
    assert cfg.format == PRESETS["iso8601"]
    assert cfg.fork is False
    assert (cfg.max_children, cfg.idle_timeout, cfg.linger, cfg.udp_rate) == (3, 1.5, 0.25, 9)
    assert cfg.user == "nobody"
    assert cfg.log_level == "debug"
    assert {"listen", "port", "udp", "user"} <= cfg.given


def test_last_fork_switch_wins() -> None:
    assert parse(["--no-fork", "--fork"]).fork is True
    assert parse(["--fork", "--no-fork"]).fork is False
    assert parse(["--port=daytime"]).port == "daytime"


HELP_OPTIONS = [
    ("--listen HOST", "address or host name to listen on when standalone; repeatable "
     "(default: every address, 0.0.0.0 and ::)"),
    ("--port PORT", "port number or service name when standalone (default: daytime, 13)"),
    ("--backlog N", "listen(2) backlog when standalone (default: SOMAXCONN)"),
    ("--udp", "standalone: also answer UDP datagrams on the same addresses"),
    ("--format FMT", "answer format: ctime (default), rfc867, rfc2822, iso8601, nist, or a "
     "strftime(3) string"),
    ("--utc", "render UTC instead of local time (local time honours TZ)"),
    ("--nist-label LABEL", "--format nist: the label field (default: UTC(HOST); UTC(NIST) "
     "claims the time comes from NIST)"),
    ("--require-sync", "answer only while the kernel says the clock is synchronized (TCP: "
     "close with no line; UDP: no reply)"),
    ("--fork", "fork a child per TCP connection (default when standalone)"),
    ("--no-fork", "answer in the server process (default when socket-activated)"),
    ("--max-children N", "fork mode: at most N children at once; further connections wait "
     "in the backlog (default: 64)"),
    ("--idle-timeout SECONDS", "socket-activated: exit after SECONDS without a connection; "
     "systemd starts it again on the next one (default: 0, never)"),
    ("--linger SECONDS", "after answering, read and discard client input for at most "
     "SECONDS (0 to 60) before closing (default: 2)"),
    ("--udp-rate N", "UDP: answer at most N datagrams per source address per second "
     "(default: 5)"),
    ("--udp-total-rate N", "UDP: answer at most N datagrams per second over all sources "
     "(default: 1000, or --udp-rate if higher)"),
    ("--user USER", "standalone as root: after binding, drop to USER and its groups"),
    ("--log-connections", "log one line per connection with the remote address"),
    ("--log-level LEVEL", "debug, info (default), warning or error"),
    ("--version", "print the version and exit"),
    ("--help", "print this help and exit"),
]  # fmt: skip


def test_help_and_version() -> None:
    with pytest.raises(Exit) as info:
        parse(["--version"])
    assert info.value.text == f"daytime-sd {__version__}\n"
    with pytest.raises(Exit) as info:
        parse(["--port", "1", "--help"])
    lines = info.value.text.split("\n")
    assert lines[:6] == [
        "usage: daytime-sd [OPTION]...",
        "",
        "RFC 867 Daytime service.  Serves the sockets systemd (or inetd) passes in;",
        "otherwise listens itself and forks per connection.",
        "",
        "options:",
    ]
    # Each option: two spaces, the flag and its value padded to 24 columns, the help.
    assert lines[6:-3] == [f"  {head}{' ' * (24 - len(head))}{text}" for head, text in HELP_OPTIONS]
    assert lines[-3:] == ["", f"See daytime-sd(8).  Version {__version__}.", ""]
    assert help_text() == info.value.text


def test_help_puts_a_long_option_on_a_line_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    long = Option("--a-very-long-option-name", "x", "what it does", "VALUE")
    monkeypatch.setattr(config, "OPTIONS", (long,))
    lines = help_text().split("\n")
    assert lines[6:8] == ["  --a-very-long-option-name VALUE", f"  {' ' * 24}what it does"]
    exactly_24 = Option("--twenty-four-chars-", "x", "fits?", "NNN")  # 24 with the value
    monkeypatch.setattr(config, "OPTIONS", (exactly_24,))
    assert help_text().split("\n")[6:8] == ["  --twenty-four-chars- NNN", f"  {' ' * 24}fits?"]
    short = Option("--twenty-three-chars NN", "x", "fits", None)  # 23: on one line
    monkeypatch.setattr(config, "OPTIONS", (short,))
    assert help_text().split("\n")[6:8] == ["  --twenty-three-chars NN fits", ""]


def test_help_wins_over_version_and_both_over_errors_after_them() -> None:
    with pytest.raises(Exit) as info:
        parse(["--version", "--help"])
    assert info.value.text.startswith("usage: ")
    with pytest.raises(UsageError):
        parse(["--help", "--bogus"])  # every argument is checked first


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bogus"], "unknown option --bogus"),
        (["-p", "13"], "unexpected argument '-p'"),
        (["extra"], "unexpected argument 'extra'"),
        (["--port"], "needs a value"),
        (["--port", "0"], "port number"),
        (["--port", "65536"], "port number"),
        (["--port", "da ytime"], "service name"),
        # Issue 11, defect 9: digits that str.isdigit() and int() take but a port is not.
        (["--port", "\u00b2"], "service name"),
        (["--port", "\u0661\u0663"], "service name"),
        (["--port", "d\u00e1ytime"], "service name"),
        (["--backlog", "\u0661\u0663"], "not a whole number"),
        (["--backlog", " 13"], "not a whole number"),
        (["--backlog", "1_3"], "not a whole number"),
        (["--backlog", "x"], "not a whole number"),
        (["--backlog", "0"], "from 1 to"),
        (["--max-children", "-1"], "from 1 to"),
        (["--idle-timeout", "nan"], "seconds"),
        (["--idle-timeout", "-1"], "seconds"),
        (["--linger", "inf"], "seconds"),
        (["--log-level", "loud"], "one of"),
        (["--utc=yes"], "takes no value"),
        (["--l", "x"], "unknown option --l"),
        (["--idle", "3"], "unknown option --idle"),
        (["--linger", "60.5"], "from 0 to 60 seconds"),
        (["--format", "%H" * 257], "longer than 512"),
        (["--format", "%c" * 30], "renders more than 510"),
        (["--format", ""], "empty"),
        (["--format", "%H%n"], "control characters"),
        (["--format", "\u00e9t\u00e9 %H"], "non-ASCII"),
        (["--listen", ""], "host name"),
        (["--", "x"], "unexpected argument"),
    ],
)
def test_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(argv)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("flag", "low", "high"),
    [
        ("--backlog", 1, 65535),
        ("--max-children", 1, 65535),
        ("--udp-rate", 1, 1_000_000),
        ("--udp-total-rate", 1, 1_000_000),
    ],
)
def test_whole_number_bounds_are_inclusive(flag: str, low: int, high: int) -> None:
    dest = flag[2:].replace("-", "_")
    assert getattr(parse([flag, str(low)]), dest) == low
    assert getattr(parse([flag, str(high)]), dest) == high
    for outside in (low - 1, high + 1, 10 * high):
        with pytest.raises(UsageError, match=f"must be from {low} to {high}"):
            parse([flag, str(outside)])


@pytest.mark.parametrize(("flag", "high"), [("--linger", 60), ("--idle-timeout", 31_536_000)])
def test_seconds_bounds_are_inclusive(flag: str, high: int) -> None:
    dest = flag[2:].replace("-", "_")
    assert getattr(parse([flag, "0"]), dest) == 0
    assert getattr(parse([flag, str(high)]), dest) == high
    for outside in (f"{high}.5", str(high + 1), "1e12", "-0.001"):
        with pytest.raises(UsageError, match=f"must be from 0 to {high} seconds"):
            parse([flag, outside])
    with pytest.raises(UsageError, match="not a number of seconds"):
        parse([flag, "soon"])


def test_port_bounds() -> None:
    assert parse(["--port", "1"]).port == "1"
    assert parse(["--port", "65535"]).port == "65535"


def test_listen_values() -> None:
    assert parse(["--listen", "a" * 255]).listen == ("a" * 255,)
    assert parse(["--listen", "a..b"]).listen == ("a..b",)  # ASCII: getaddrinfo judges it
    assert parse(["--listen", "[::1"]).listen == ("[::1",)  # brackets only in pairs
    assert parse(["--listen", "::1]"]).listen == ("::1]",)
    for bad in ("a" * 256, "a\0b", "\u00e9..x"):  # too long, NUL, not IDNA-encodable
        with pytest.raises(UsageError, match="must be a host name"):
            parse(["--listen", bad])


def test_double_dash() -> None:
    dashes = "".join(["-", "-"])  # built at run time, as argv strings are: not a constant
    assert parse(["--udp", dashes]).udp is True  # "--" ends the options
    for bad in (["-"], [""], ["!"]):
        with pytest.raises(UsageError, match="unexpected argument"):
            parse(bad)
    with pytest.raises(UsageError, match="unknown option --"):
        parse(["--=x"])  # an empty flag is no prefix of every option


def test_a_long_command_line() -> None:
    many = ["--udp"] * 300  # more arguments than CPython's shared small integers
    assert parse(many).udp is True
    assert parse([*many, "".join(["-", "-"])]).udp is True
    with pytest.raises(UsageError, match="needs a value"):
        parse([*many, "--port"])


def test_no_abbreviations() -> None:
    """A prefix that is unique today must not be accepted: a later option could share it."""
    for flag in ("--max", "--log-c", "--list", "--ver", "--hel"):
        with pytest.raises(UsageError, match=f"unknown option {flag}$"):
            parse([flag, "7"] if flag == "--max" else [flag])


def test_the_option_table_is_the_single_source_of_settings() -> None:
    typed = set(config.Config.__annotations__)
    assert set(config.Config.__slots__) == typed
    for option in OPTIONS:
        if option.dest not in ("help", "version"):
            assert option.dest in typed, option.flag
    assert config.Config().linger == config.DEFAULT_LINGER
    assert config.Config(linger=1.0).linger == 1.0
    with pytest.raises(TypeError, match="unknown settings: lingr"):
        config.Config(lingr=1.0)


def test_presets_skip_the_start_up_renders(monkeypatch: pytest.MonkeyPatch) -> None:
    """Presets are trusted (test_protocol renders every one); a strftime string is checked."""

    def refuse(fmt: str, utc: bool) -> None:
        raise AssertionError(f"validate_format({fmt!r}) on a preset")

    monkeypatch.setattr(config, "validate_format", refuse)
    for name, fmt in PRESETS.items():
        cfg = parse(["--format", name])
        assert cfg.format == fmt
    with pytest.raises(AssertionError):
        parse(["--format", "%H:%M"])


def test_the_udp_total_rate_default_is_the_limiters() -> None:
    from daytime_sd import udp

    assert config.DEFAULT_UDP_TOTAL_RATE == udp.DEFAULT_TOTAL_RATE
    assert parse([]).udp_total_rate is None
    assert parse(["--udp-total-rate", "50"]).udp_total_rate == 50


def test_nist_from_a_real_command_line() -> None:
    """argv's strings are decoded from bytes, never the interned constants a test writes."""
    fmt = b"nist".decode()
    cfg = parse(["--format", fmt])
    assert cfg.format == "nist"


def test_a_strftime_format_is_kept_as_given() -> None:
    assert parse(["--format", "%H:%M:%S"]).format == "%H:%M:%S"


def test_require_sync_is_off_unless_asked() -> None:
    assert parse([]).require_sync is False
    assert parse(["--require-sync"]).require_sync is True


@pytest.mark.parametrize("module", ["daytime_sd.config"])
def test_importing_it_loads_neither_collections_nor_typing(
    lean_import: Callable[[str], None], module: str
) -> None:
    """Every connection of the per-connection path parses its command line."""
    lean_import(module)
