"""Command-line parsing: defaults, every option, and the errors (exit status 2 material)."""

from __future__ import annotations

import pytest

from daytime_sd import __version__
from daytime_sd.config import OPTIONS, Exit, UsageError, help_text, parse
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


def test_last_fork_switch_wins_and_prefixes_work() -> None:
    assert parse(["--no-fork", "--fork"]).fork is True
    assert parse(["--idle", "3"]).idle_timeout == 3
    assert parse(["--port=daytime"]).port == "daytime"


def test_help_and_version() -> None:
    with pytest.raises(Exit) as info:
        parse(["--version"])
    assert info.value.text == f"daytime-sd {__version__}\n"
    with pytest.raises(Exit) as info:
        parse(["--port", "1", "--help"])
    assert info.value.text == help_text()
    for option in OPTIONS:
        assert option.flag in help_text()


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
        (["--backlog", "x"], "not a whole number"),
        (["--backlog", "0"], "from 1 to"),
        (["--max-children", "-1"], "from 1 to"),
        (["--idle-timeout", "nan"], "seconds"),
        (["--idle-timeout", "-1"], "seconds"),
        (["--linger", "inf"], "seconds"),
        (["--log-level", "loud"], "one of"),
        (["--utc=yes"], "takes no value"),
        (["--l", "x"], "ambiguous"),
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
