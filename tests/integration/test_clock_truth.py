# SPDX-License-Identifier: MIT
"""Issue 12: the clock's sync state in every mode, NIST's layout, and --require-sync.

The real service throughout; only for --require-sync is the kernel clock's state injected
(fakeclock.py), since the machine's own state is not ours to change.
"""

from __future__ import annotations

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
