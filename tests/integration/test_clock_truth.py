# SPDX-License-Identifier: MIT
"""Issue 12: the clock's sync state in every mode, NIST's layout, and --require-sync.

The real service throughout; only for --require-sync is the kernel clock's state injected
(fakeclock.py), since the machine's own state is not ours to change.
"""

from __future__ import annotations

import calendar
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from daytime_sd import clock, nist

from .support import (
    CTIME,
    PYTHON,
    base_env,
    free_port,
    query,
    read_to_eof,
    service,
)  # fmt: skip

NIST_LINE = re.compile(
    rb"^\d{5} \d\d-\d\d-\d\d \d\d:\d\d:\d\d \d\d [012] ([012])   0\.0 UTC\(HOST\) \*\r\n$"
)


def expected_health() -> int:
    try:
        return nist.health(clock.read())
    except OSError:
        return nist.health(None)


def fake(state_file: Path) -> list[str]:
    return [PYTHON, "-m", "tests.integration.fakeclock", str(state_file), "--"]


def tcp_answer(port: int) -> tuple[bytes, bool]:
    """(what arrived before EOF, whether the connection was reset)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            return read_to_eof(sock), False
        except ConnectionResetError:
            return b"", True


def udp_answer(port: int, timeout: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(b"?", ("127.0.0.1", port))
        try:
            return sock.recv(600)
        except TimeoutError:
            return None


def inetd_answer(argv: list[str]) -> tuple[bytes, subprocess.CompletedProcess[bytes]]:
    """Run ``argv`` with a connected TCP socket as stdin (inetd ``nowait``): what the
    client received before EOF, and the process."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    with server, socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        conn, _ = server.accept()
        with conn:
            proc = subprocess.run(
                argv, stdin=conn.fileno(), capture_output=True, env=base_env(), timeout=30
            )
        return read_to_eof(client), proc


# -- NIST's layout, with H from this machine's kernel --------------------------------------


def test_nist_in_process_and_in_status() -> None:
    port = free_port()
    with service(["--listen", "127.0.0.1", "--port", str(port), "--format", "nist"]) as svc:
        line = query("127.0.0.1", port)
        m = NIST_LINE.match(line)
        assert m, line
        assert int(m.group(1)) == expected_health(), line
        # The first STATUS= after the first read names the state (never silently absent).
        status = svc.notify.wait_for("READY=1")
        deadline = time.monotonic() + 10
        while "clock" not in status and time.monotonic() < deadline:
            svc.notify.poll(0.3)
            status = " ".join(svc.notify.messages)
        assert re.search(r"clock (NOT synchronized|synchronized \(±\d+ ms\)|state unknown)", status)
        assert re.search(r"clock (NOT synchronized|synchronized|state unknown)", svc.stderr)


def test_nist_per_connection_inetd() -> None:
    line, proc = inetd_answer([PYTHON, "-m", "daytime_sd", "--format", "nist"])
    assert proc.returncode == 0, proc.stderr
    m = NIST_LINE.match(line)
    assert m and int(m.group(1)) == expected_health(), line


def test_the_loop_logs_the_clock_state_at_start_in_the_default_format() -> None:
    port = free_port()
    with service(["--listen", "127.0.0.1", "--port", str(port)]) as svc:
        assert CTIME.match(query("127.0.0.1", port))
        deadline = time.monotonic() + 10
        while "clock" not in svc.stderr and time.monotonic() < deadline:
            time.sleep(0.05)
    lines = [x for x in svc.stderr.splitlines() if "clock" in x]
    assert len(lines) == 1, svc.stderr  # one line at start, none per read
    if expected_health() == 2:
        assert "NOT synchronized" in lines[0] or "unknown" in lines[0], lines


# -- --require-sync, the state injected ----------------------------------------------------


@pytest.mark.parametrize("udp", [False, True])
def test_require_sync_is_silent_while_unsynchronized_and_answers_once_synchronized(
    tmp_path: Path, udp: bool
) -> None:
    state = tmp_path / "state"
    state.write_text("unsynced")
    port = free_port()
    args = ["--listen", "127.0.0.1", "--port", str(port), "--require-sync"]
    args += ["--udp"] if udp else []
    with service(args, inner=fake(state)) as svc:
        for _ in range(3):
            assert tcp_answer(port) == (b"", False)  # a normal close: EOF, no line, no RST
        if udp:
            assert udp_answer(port) is None  # silence
        state.write_text("synced")
        deadline = time.monotonic() + 10
        while (got := tcp_answer(port))[0] == b"" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert CTIME.match(got[0]), got
        if udp:
            answer = udp_answer(port, timeout=5)
            assert answer is not None and CTIME.match(answer), answer
        state.write_text("error")  # unreadable counts as not synchronized
        deadline = time.monotonic() + 10
        while tcp_answer(port)[0] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tcp_answer(port) == (b"", False)
        svc.signal(signal.SIGTERM)
        assert svc.wait() == 0
    log = svc.stderr
    # Once per episode: not synchronized, synchronized again, unknown: three lines.
    assert log.count("--require-sync: no answers until it is") == 2, log
    assert log.count("answering again") == 1, log
    assert "Traceback" not in log


def test_require_sync_per_connection_closes_without_a_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("unsynced")
    line, proc = inetd_answer([*fake(state), PYTHON, "-m", "daytime_sd", "--require-sync"])
    assert proc.returncode == 0, proc.stderr
    assert line == b""
    assert b"closing without an answer" in proc.stderr, proc.stderr


def test_the_fake_clock_wrapper_runs_the_real_service(tmp_path: Path) -> None:
    """The wrapper itself: with a synchronized state the answer is a normal line."""
    state = tmp_path / "state"
    state.write_text("synced")
    port = free_port()
    args = ["--listen", "127.0.0.1", "--port", str(port), "--require-sync", "--format", "nist"]
    with service(args, inner=fake(state)):
        line = query("127.0.0.1", port)
    m = NIST_LINE.match(line)
    assert m and m.group(1) == b"0", line  # H 0: maxerror 20 ms


# -- the first client of an activation (issue 21.1) -----------------------------------------


@pytest.mark.parametrize("mode", ["--no-fork", "--fork"])
def test_the_client_that_starts_the_service_is_answered_from_a_read_clock(
    tmp_path: Path, mode: str
) -> None:
    """systemd-socket-activate starts the service on the first connection: that client is
    answered from the clock's state, read before READY=1 (it got EOF, or NIST's H = 2)."""
    state = tmp_path / "state"
    state.write_text("synced")
    port = free_port()
    args = ["--require-sync", "--format", "nist", mode]
    with service(args, activate=["-l", f"127.0.0.1:{port}"], inner=fake(state)) as svc:
        first = tcp_answer(port)
        m = NIST_LINE.match(first[0])
        assert m and m.group(1) == b"0", first  # a line, and H 0: maxerror 20 ms
        for _ in range(2):
            assert NIST_LINE.match(tcp_answer(port)[0])
        svc.ready()
    assert "answering again" not in svc.stderr  # nothing had changed
    assert svc.stderr.count("clock synchronized") == 1, svc.stderr


def test_the_datagram_that_starts_the_service_is_answered(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("synced")
    port = free_port()
    with service(["--require-sync"], activate=["-d", "-l", f"127.0.0.1:{port}"], inner=fake(state)):
        answer = udp_answer(port, timeout=10)
        assert answer is not None and CTIME.match(answer), answer


# -- a clock read that fails in any way (issues 21.4 and 21.5) -------------------------------


@pytest.mark.parametrize(
    ("failure", "words"),
    [
        ("raise", "clock state unknown: reading it failed (TypeError: the binding changed shape)"),
        ("error", "clock state unknown: adjtimex refused by the sandbox (Operation not permitted)"),
    ],
)
def test_a_failing_clock_read_is_unknown_and_serving_goes_on(
    tmp_path: Path, failure: str, words: str
) -> None:
    state = tmp_path / "state"
    state.write_text(failure)
    port = free_port()
    nist_port = free_port()
    args = ["--listen", "127.0.0.1", "--port", str(port), "--require-sync", "--udp"]
    with (
        service(args, inner=fake(state)) as svc,
        service(["--listen", "127.0.0.1", "--port", str(nist_port), "--format", "nist"],
                inner=fake(state)) as nist_svc,
    ):  # fmt: skip
        time.sleep(2.5)  # a few reads, each failing
        for _ in range(3):
            assert tcp_answer(port) == (b"", False)  # withheld: a normal close, no line
            m = NIST_LINE.match(query("127.0.0.1", nist_port))
            assert m and m.group(1) == b"2", m  # H 2: not shown to be within 5 s
        assert udp_answer(port) is None
        status = svc.notify.wait_for("READY=1")
        assert words in status, status  # STATUS= says unknown, and why
        state.write_text("synced")
        deadline = time.monotonic() + 10
        while (got := tcp_answer(port))[0] == b"" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert CTIME.match(got[0]), got
        assert svc.proc.poll() is None and nist_svc.proc.poll() is None
    for log in (svc.stderr, nist_svc.stderr):
        assert log.count(words) == 1, log  # said once, not once a read
        assert "Traceback" not in log


# -- the leap-second list (issue 21.6) ----------------------------------------------------------


def test_an_expired_leap_list_is_read_once_said_once_and_read_again_when_it_changes(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.write_text("synced")
    leap_list = tmp_path / "leap-seconds.list"
    ntp = 2_208_988_800
    leap_list.write_text(f"#@\t{1_782_604_800 + ntp}\n2272060800\t10\n3692217600\t37\n")
    port = free_port()
    args = ["--listen", "127.0.0.1", "--port", str(port), "--format", "nist"]
    env = {"DAYTIME_TEST_LEAP_LIST": str(leap_list)}
    with service(args, inner=fake(state), env=env) as svc:
        for _ in range(5):  # five rendered seconds
            assert NIST_LINE.match(query("127.0.0.1", port))
            time.sleep(0.6)
        assert svc.stderr.count("fakeclock: leap list read") == 1, svc.stderr
        assert svc.stderr.count("expired on 2026-06-28") == 1, svc.stderr
        # tzdata upgraded: a current list, which announces a leap second at the end of
        # this UTC month, so L follows it.
        now = time.gmtime()
        next_month = (now.tm_year + now.tm_mon // 12, now.tm_mon % 12 + 1)
        at = calendar.timegm((*next_month, 1, 0, 0, 0)) + ntp
        new = tmp_path / "new"
        new.write_text(f"#@\t{int(time.time()) + 86400 * 400 + ntp}\n2272060800\t10\n{at}\t38\n")
        new.replace(leap_list)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = query("127.0.0.1", port)
            if line.split()[4] == b"1":
                break
            time.sleep(0.2)
        assert line.split()[4] == b"1", line  # L: a leap second this month
        assert svc.stderr.count("fakeclock: leap list read") == 2, svc.stderr
        svc.signal(signal.SIGHUP)  # reload reads it again at the next need
        deadline = time.monotonic() + 10
        while svc.stderr.count("fakeclock: leap list read") < 3 and time.monotonic() < deadline:
            query("127.0.0.1", port)
            time.sleep(0.2)
        assert svc.stderr.count("fakeclock: leap list read") == 3, svc.stderr
