# SPDX-License-Identifier: MIT
"""The serving core's defects from issue 11, each as the behaviour a user would see.

Every test here failed against the core before the redesign (commit 4c357fa).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from .load import run_load
from .support import (
    CTIME,
    LINE,
    base_env,
    free_port,
    needs_root,
    query,
    service,
    spare_uid,
    wait_port,
)  # fmt: skip

NOGROUP = 65534


# -- defect 2: a socket on fd 0 must not silently win over an explicit command line -----------


def test_a_socketpair_on_stdin_does_not_override_listen_and_port() -> None:
    port = free_port()
    ours, theirs = socket.socketpair()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daytime_sd", "--listen", "127.0.0.1", "--port", str(port)],
            stdin=theirs.fileno(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=base_env(),
        )  # fmt: skip
        theirs.close()
        try:
            wait_port("127.0.0.1", port)
            assert CTIME.match(query("127.0.0.1", port))
            ours.setblocking(False)
            with pytest.raises(BlockingIOError):  # nothing was written into our stdin
                ours.recv(64)
        finally:
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert b"(in-process); standalone" in err or b"(fork per connection); standalone" in err, (
            err
        )
    finally:
        ours.close()


def test_a_socketpair_on_stdin_with_no_options_is_answered_as_inetd() -> None:
    ours, theirs = socket.socketpair()
    with ours:
        proc = subprocess.run(
            [sys.executable, "-m", "daytime_sd"], stdin=theirs.fileno(), capture_output=True,
            env=base_env(), timeout=15,
        )  # fmt: skip
        theirs.close()
        assert proc.returncode == 0, proc.stderr
        assert CTIME.match(ours.recv(64))


# -- defect 3: stopping is bounded ------------------------------------------------------------


def test_sigterm_with_a_client_that_never_closes_exits_well_inside_timeoutstopsec() -> None:
    """--linger 30: the old final wait was linger + 2 s, past the unit's TimeoutStopSec=10s."""
    port = free_port()
    with service(["--listen", "127.0.0.1", "--port", str(port), "--linger", "30"]) as svc:
        held = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            assert CTIME.match(held.recv(64))
            time.sleep(0.3)  # it lingers now, waiting for our EOF
            started = time.monotonic()
            svc.signal(signal.SIGTERM)
            assert svc.wait(timeout=20) == 0
            assert time.monotonic() - started < 6.0
            assert held.recv(64) == b""  # a clean FIN, no reset
        finally:
            held.close()


def _activated_by_hand(listener: socket.socket, *args: str) -> subprocess.Popen[bytes]:
    """The service with ``listener`` as LISTEN_FDS=1, the test keeping a copy of it."""
    fd = listener.fileno()
    script = (
        "import os, sys\n"
        f"if {fd} != 3:\n    os.dup2({fd}, 3)\n    os.close({fd})\n"
        "os.set_inheritable(3, True)\n"
        "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()))\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'daytime_sd', *sys.argv[1:]])\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=base_env(), pass_fds=[fd],
    )  # fmt: skip


def test_a_listener_that_fails_with_an_undocumented_errno_neither_spins_nor_blocks_stop() -> None:
    """shutdown(2) on a listener makes accept(2) fail with EINVAL for ever, and epoll go on
    reporting it: logged once, no busy loop, and SIGTERM still stops the service."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    proc = _activated_by_hand(listener)
    try:
        assert CTIME.match(query("127.0.0.1", port))
        listener.shutdown(socket.SHUT_RD)  # the shared listening socket stops listening
        time.sleep(1.5)
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        assert proc.poll() is None
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
        assert time.monotonic() - started < 6.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        listener.close()
    assert proc.returncode == 0, err
    assert err.count(b"accept failed") == 1, err
    assert cpu < 1.0, f"{cpu} s of CPU in 1.5 s: a busy loop"


# -- defect 6: fork mode never exceeds --max-children --------------------------------------


@needs_root("RLIMIT_NPROC for an unused uid counts the service's processes; setpriv needs root")
def test_two_listeners_never_take_more_children_than_max_children() -> None:
    """RLIMIT_NPROC = 1 + --max-children for a uid of its own: a fork past the bound fails
    with EAGAIN, which the service logs.  Zombies count until reaped, so the bound is on
    children not yet reaped, as --max-children is."""
    port = free_port()
    as_spare = ["setpriv", f"--reuid={spare_uid()}", f"--regid={NOGROUP}", "--clear-groups"]
    args = ["--listen", "127.0.0.1", "--listen", "::1", "--port", str(port), "--fork"]
    with service([*args, "--max-children", "1"], wrap=["prlimit", "--nproc=2:2", *as_spare]) as svc:
        results = {}

        def load(host: str) -> None:
            results[host] = run_load(host, port, rate=150, duration=3.0)

        threads = [threading.Thread(target=load, args=(h,)) for h in ("127.0.0.1", "::1")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for host, result in results.items():
            assert result.errors == 0 and result.ok == result.started > 100, (host, result)
        assert "fork failed" not in svc.stderr, svc.stderr


# -- defect 7: a time-zone change is seen on SIGHUP -------------------------------------------


@needs_root("a private mount namespace (unshare --mount) needs root")
def test_sighup_reads_the_time_zone_again() -> None:
    """/etc/localtime swapped under a running service, in a mount namespace of its own."""
    port = free_port()
    zoneinfo = "/usr/share/zoneinfo"
    env = {k: v for k, v in base_env().items() if k != "TZ"}
    script = f'mount --bind {zoneinfo}/Asia/Tokyo /etc/localtime && exec "$@"'
    wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
    with service(["--listen", "127.0.0.1", "--port", str(port), "--format", "%Z"],
                 wrap=wrap, env=env) as svc:  # fmt: skip
        # svc.pid is the service: sh and unshare exec.
        assert query("127.0.0.1", port) == b"JST\r\n"
        swap = ["nsenter", "-t", str(svc.pid), "-m", "mount", "--bind",
                f"{zoneinfo}/Europe/Berlin", "/etc/localtime"]  # fmt: skip
        subprocess.run(swap, check=True, timeout=10)
        time.sleep(1.1)  # a new second: the line cache would render anew by itself
        assert query("127.0.0.1", port) == b"JST\r\n"  # glibc read the zone once
        svc.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while (line := query("127.0.0.1", port)) == b"JST\r\n" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert line in (b"CET\r\n", b"CEST\r\n"), line
        while "time zone read again" not in svc.stderr and time.monotonic() < deadline:
            time.sleep(0.05)  # the stderr reader thread may be a moment behind
        assert "time zone read again" in svc.stderr, svc.stderr
        assert svc.proc.poll() is None


# -- defect 8: closed standard descriptors ----------------------------------------------------


@pytest.mark.parametrize("closed", ["2>&-", "<&- >&- 2>&-"])
def test_it_serves_with_standard_descriptors_closed(closed: str) -> None:
    port = free_port()
    inner = ["sh", "-c", f'exec "$@" {closed}', "sh"]
    with service(["--listen", "127.0.0.1", "--port", str(port), "--fork"], inner=inner) as svc:
        for _ in range(3):
            assert CTIME.match(query("127.0.0.1", port))
        fds = {n: os.readlink(f"/proc/{svc.pid}/fd/{n}") for n in ("0", "1", "2")}
        for n in closed.replace("<", "0").replace(">", "1").split():
            fd = "2" if n.startswith("2") else n[0]
            assert fds[fd] == "/dev/null", fds  # opened on /dev/null, not taken by a socket
        svc.signal(signal.SIGTERM)
        assert svc.wait() == 0


# -- defect 9: a unix listener is not called tcp ----------------------------------------------


def test_status_names_a_unix_listener_unix() -> None:
    path = f"/tmp/dsd-status-{os.getpid()}.sock"
    try:
        with service([], activate=["-l", path]) as svc:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.settimeout(10)
                client.connect(path)
                assert LINE.match(client.recv(64))
            ready = svc.notify.wait_for("READY=1")
            assert f"unix {path}" in ready and "tcp" not in ready, ready
    finally:
        if os.path.exists(path):
            os.unlink(path)


# -- defect 13: nothing left unclosed at exit -------------------------------------------------


@pytest.mark.parametrize("mode", ["--fork", "--no-fork"])
def test_no_resource_warnings_at_exit_in_development_mode(mode: str) -> None:
    port = free_port()
    args = ["--listen", "127.0.0.1", "--port", str(port), "--udp", mode]
    with service(args, env={"PYTHONDEVMODE": "1"}) as svc:
        assert CTIME.match(query("127.0.0.1", port))
        svc.signal(signal.SIGTERM)
        assert svc.wait() == 0
    assert "ResourceWarning" not in svc.stderr, svc.stderr
    assert "Traceback" not in svc.stderr, svc.stderr
