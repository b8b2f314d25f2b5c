# SPDX-License-Identifier: MIT
"""Issue 6: property-based fuzzing of the command line and of LISTEN_FDS, LISTEN_PID,
LISTEN_FDNAMES and TZ, against the real CLI in a subprocess.

The contract: never a traceback; either correct behaviour (help, version, or serving: then
it is stopped with SIGTERM and must exit 0) or exactly one line ``daytime-sd: error: ...``
and a non-zero exit.

Every run starts with ``--listen 127.0.0.1 --port <free>``, and the fuzzed part can name
only loopback or unresolvable-without-DNS hosts and harmless ports, so whatever it does,
it binds nothing but loopback and sends no DNS query.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from .support import LINE, PYTHON, REPO, Notifications, base_env, free_port, query

# Hypothesis keeps caches in ./.hypothesis; not in the checkout.
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "daytime-sd-hypothesis"))
EXAMPLES = int(os.environ.get("DAYTIME_FUZZ_EXAMPLES", "50"))  # each is one CLI start
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
START = 15.0  # seconds to either exit or be serving, on a loaded machine


# -- running one example ----------------------------------------------------------------------


def check_run(
    argv: Sequence[str],
    env: dict[str, str],
    pass_fds: Sequence[int] = (),
    ports: Sequence[int] = (),
    quiet_exit: bool = False,
) -> str:
    """Run the CLI and assert the contract.

    Returns "served" (was ready, answered a line on one of ``ports``, stopped with
    SIGTERM), "served-elsewhere" (the same, but none of ``ports`` was its: e.g. --port 0),
    "exit" (--help, --version),
    "answered" (exit 0 in silence: it answered the connections it was handed, allowed
    only with ``quiet_exit``), "usage" (exit 2) or "error" (exit 1).
    """
    notify = Notifications()
    env = {**env, "NOTIFY_SOCKET": notify.path}
    targets = list(range(3, 3 + len(pass_fds)))

    def place_fds() -> None:  # in the child: the passed sockets at fds 3, 4, ...
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 200) for fd in pass_fds]
        for fd, target in zip(high, targets, strict=True):
            os.dup2(fd, target)  # inheritable
            os.close(fd)

    try:
        proc = subprocess.Popen(
            argv, env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, close_fds=not pass_fds,
            preexec_fn=place_fds if pass_fds else None,
        )  # fmt: skip
        deadline = time.monotonic() + START
        served = False
        answers = 0
        while proc.poll() is None and time.monotonic() < deadline:
            if any("READY=1" in m.split("\n") for m in notify.poll(0.05)):
                served = True
                break
        if proc.poll() is None:
            assert served, f"neither exited nor ready within {START} s: {argv}"
            for port in ports:
                try:
                    line = query("127.0.0.1", port, timeout=5)
                except ConnectionRefusedError:
                    continue  # e.g. --port 0, or activated: not what it serves
                # Serving and reachable: a line, never an empty answer.
                assert LINE.match(line), (argv, line)
                answers += 1
            proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"did not stop on SIGTERM: {argv} {err!r}") from None
    finally:
        notify.close()
    stderr = err.decode(errors="replace")
    assert "Traceback" not in stderr, (argv, stderr)
    if served:
        assert proc.returncode == 0, (argv, proc.returncode, stderr)
        assert out == b"", (argv, out)
        return "served" if answers else "served-elsewhere"
    if proc.returncode == 0 and quiet_exit and not out:
        assert "error" not in stderr, (argv, stderr)
        return "answered"
    if proc.returncode == 0:  # --help or --version
        assert out and not stderr, (argv, out, stderr)
        return "exit"
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("daytime-sd: error: "), (argv, stderr)
    assert out == b"", (argv, out)
    assert proc.returncode in (1, 2), (argv, proc.returncode)
    return "usage" if proc.returncode == 2 else "error"


# -- the command line ---------------------------------------------------------------------------

FLAGS = ["--udp", "--utc", "--fork", "--no-fork", "--log-connections", "--version", "--help"]
SURROGATE = os.fsdecode(b"\xff")  # an argv byte that is not UTF-8
junk = st.one_of(
    st.text(max_size=12).filter(lambda t: "\0" not in t),
    st.binary(max_size=8).filter(lambda b: b"\0" not in b).map(os.fsdecode),
)
numbers = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["", " 5", "0x10", "1_000", "٣", "²", "nan", "inf", "-0", "1e309"]),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    junk,
)
formats = st.one_of(
    st.sampled_from(
        ["ctime", "rfc867", "rfc2822", "iso8601", "", "%", "%Z", "%c", "%x%X", "%%",
         "%Ez", "%-d", "%n", "%t", "é%H", "%Q", "%" * 99, "a\r\nb", "%a %b %d %T %Y"]
    ),
    st.text(alphabet="%aAbBcdHIjmMpSUwWxXyYZz:- \t\n\r\x7féü" + SURROGATE, max_size=10),
)  # fmt: skip
hosts = st.sampled_from(
    ["127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2", "0x7f.1", "::ffff:127.0.0.1",
     "999.0.0.1", "127.0.0.1%lo", SURROGATE, "a" * 300, "[127.0.0.1]", "a..b", "x" * 64]
)  # fmt: skip


def valued(flags: Sequence[str], values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """``--flag value`` or ``--flag=value`` (abbreviations are refused: test_config)."""

    def shape(flag: str, value: str, form: int) -> list[str]:
        return [flag, value] if form == 0 else [f"{flag}={value}"]

    return st.builds(shape, st.sampled_from(flags), values, st.integers(0, 1))


PORT = "{port}"  # the free port of the run


def cli_args() -> st.SearchStrategy[list[str]]:
    ports = st.sampled_from([PORT, "0", "-1", "65536", "", "x y", "١٢٣", SURROGATE, "²"])
    pieces = st.one_of(
        st.sampled_from(FLAGS).map(lambda f: [f]),
        valued(["--format"], formats),
        valued(["--backlog", "--max-children", "--udp-rate"], numbers),
        valued(["--idle-timeout", "--linger"], numbers),
        valued(["--log-level"], st.sampled_from(["debug", "INFO", "warning", "error", "x", ""])),
        valued(["--listen"], hosts),
        valued(["--port"], ports),
        valued(["--user"], st.sampled_from(["nobody", "root", "no-such-user-x", "", "0"])),
        st.sampled_from([["--"], ["-"], ["-h"], ["--x"], ["--no"], ["--u"], ["--lo"]]),
        junk.filter(lambda t: not t.startswith("-")).map(lambda t: [t]),
    )
    return st.lists(pieces, max_size=5).map(lambda parts: [a for p in parts for a in p])


@FUZZ
@given(args=cli_args())
@example(args=["--listen", SURROGATE])  # found by this test: UnicodeError from getaddrinfo
@example(args=["--listen", "a..b"])  # the same, an empty DNS label
@example(args=["--port", "١٢٣"])
def test_command_line_never_tracebacks(args: list[str]) -> None:
    port = free_port()
    args = [arg.replace(PORT, str(port)) for arg in args]
    base = [PYTHON, "-m", "daytime_sd", "--listen", "127.0.0.1", "--port", str(port)]
    event(check_run([*base, *args], base_env(), ports=[port]))


def valid_args() -> st.SearchStrategy[list[str]]:
    """Only valid options and values: every one of these command lines must serve."""
    good_formats = st.sampled_from(
        ["ctime", "rfc867", "rfc2822", "iso8601", "%H:%M:%S", "%c", "%s", "%%", "%Y-%j",
         "%a %b %d %T %Y", "daytime %F %T %z", "%:z", "%I %p"]
    )  # fmt: skip
    pieces = st.one_of(
        st.sampled_from(["--udp", "--utc", "--fork", "--no-fork", "--log-connections"]).map(
            lambda f: [f]
        ),
        valued(["--format"], good_formats),
        valued(["--backlog", "--max-children"], st.integers(1, 65535).map(str)),
        valued(["--udp-rate"], st.integers(1, 1_000_000).map(str)),
        valued(["--linger"], st.sampled_from(["0", "0.5", "2", "1e-3", "3"])),
        valued(["--idle-timeout"], st.sampled_from(["0", "0.0", "60", "31536000", "1.5"])),
        valued(["--log-level"], st.sampled_from(["debug", "INFO", "Warning", "error"])),
        valued(["--listen"], st.sampled_from(["127.0.0.1", "[127.0.0.1]"])),
        valued(["--port"], st.just(PORT)),
    )
    return st.lists(pieces, max_size=6).map(lambda parts: [a for p in parts for a in p])


@settings(FUZZ, max_examples=max(10, EXAMPLES // 2))
@given(args=valid_args())
@example(args=["--format=iso8601", "--utc", "--no-fork"])
def test_a_valid_command_line_serves(args: list[str]) -> None:
    """The oracle the never-traceback test lacks: a parser that refused everything, or a
    server that answered nothing, would pass that one; valid input must serve a line."""
    port = free_port()
    args = [arg.replace(PORT, str(port)) for arg in args]
    base = [PYTHON, "-m", "daytime_sd", "--listen", "127.0.0.1", "--port", str(port)]
    outcome = check_run([*base, *args], base_env(), ports=[port])
    assert outcome == "served", (args, outcome)


# -- LISTEN_PID / LISTEN_FDS / LISTEN_FDNAMES / TZ ----------------------------------------------

SELF = "$$"  # replaced by the service's own pid (sh execs it, keeping the pid)
fd_kinds = st.sampled_from(["tcp", "udp", "unbound", "pipe", "file", "unix"])
pids = st.one_of(
    st.sampled_from([SELF, SELF, SELF, "1", "0", "", "-1", " 1", "99999999999999999999"]),
    st.integers(0, 2**31).map(str),
    junk,
)
counts = st.one_of(st.integers(-1, 6).map(str), st.sampled_from(["", "1 ", "+1", "٣", "1e1"]), junk)
names = st.lists(st.text(alphabet="abc:-_.\t ", max_size=6), min_size=0, max_size=4).map(":".join)
tzs = st.one_of(
    st.sampled_from(
        ["UTC", "Europe/Berlin", "America/Los_Angeles", ":/etc/localtime", "EST5EDT",
         "<+03>-3", "<ÄÖ>-1", "XYZ-99:99", "/nonexistent", "../../etc/passwd", "", "A" * 300]
    ),
    junk,
)  # fmt: skip


def make_fd(kind: str, stack: ExitStack) -> int:
    if kind in ("tcp", "udp", "unbound"):
        sock_type = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
        sock = stack.enter_context(socket.socket(socket.AF_INET, sock_type))
        if kind != "unbound":
            sock.bind(("127.0.0.1", 0))
        if kind == "tcp":
            sock.listen(16)
        return sock.fileno()
    if kind == "unix":
        left, right = socket.socketpair()
        stack.enter_context(left)
        stack.enter_context(right)
        return left.fileno()
    if kind == "pipe":
        read, write = os.pipe()
        stack.callback(os.close, read)
        stack.callback(os.close, write)
        return read
    fd = os.open(os.devnull, os.O_RDONLY)
    stack.callback(os.close, fd)
    return fd


def bound_port(fd: int) -> int:
    with socket.socket(fileno=os.dup(fd)) as sock:
        port: int = sock.getsockname()[1]
        return port


@FUZZ
@given(
    pid=pids,
    count=st.one_of(st.none(), counts),
    fdnames=st.one_of(st.none(), names),
    kinds=st.lists(fd_kinds, max_size=3),
    tz=st.one_of(st.none(), tzs),
    fmt=st.sampled_from([[], ["--format", "rfc867"], ["--format", "%Z %z"], ["--utc"]]),
)
def test_activation_environment_never_tracebacks(
    pid: str, count: str | None, fdnames: str | None, kinds: list[str], tz: str | None,
    fmt: list[str],
) -> None:  # fmt: skip
    port = free_port()
    env = base_env()
    if count is not None:
        env["LISTEN_FDS"] = count
    if fdnames is not None:
        env["LISTEN_FDNAMES"] = fdnames
    if tz is not None:
        env["TZ"] = tz
    argv = [PYTHON, "-m", "daytime_sd", "--listen", "127.0.0.1", "--port", str(port), *fmt]
    if pid == SELF:
        argv = ["/bin/sh", "-c", 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"', "sh", *argv]
    else:
        env["LISTEN_PID"] = pid
    with ExitStack() as stack:
        fds = [make_fd(kind, stack) for kind in kinds]
        # The listeners it was really handed (addressed to it, within LISTEN_FDS): the
        # others are left alone, and a connection to them would wait unanswered.
        text = count or ""
        addressed = pid == SELF and text.isascii() and text.isdigit()
        handed = list(zip(fds, kinds, strict=True))[: int(text) if addressed else 0]
        listening = [bound_port(fd) for fd, kind in handed if kind == "tcp"]
        outcome = check_run(
            argv, env, pass_fds=fds, ports=[port, *listening], quiet_exit="unix" in kinds
        )
    event(outcome)
    if pid == SELF and count == str(len(kinds)) and fdnames is None and kinds:
        # Addressed to it and well formed: it serves what it was given, or says what is not
        # a socket it can serve.
        if not set(kinds) <= {"tcp", "udp", "unix"}:
            assert outcome == "error", (kinds, outcome)
        elif "tcp" in kinds:
            assert outcome == "served", (kinds, outcome)  # and it answered on them
        elif "udp" in kinds:
            assert outcome in ("served", "served-elsewhere"), (kinds, outcome)
        else:
            assert outcome == "answered", (kinds, outcome)
