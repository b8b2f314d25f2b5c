# SPDX-License-Identifier: MIT
"""Issue 6: abuse and faults — silent floods, hostile clients, fd and process exhaustion,
signals under load, and what ``--user`` leaves behind.  Standalone fork mode and the
Accept=no in-process mode (through the real systemd-socket-activate), loopback only.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import struct
import subprocess
import time
from contextlib import ExitStack

import pytest

from .load import MODES, Background, cpu_seconds, draining, held_peers, run_load, serving
from .support import (
    CTIME,
    PYTHON,
    REPO,
    base_env,
    children,
    free_port,
    query,
    read_to_eof,
    service,
    spare_uid,
)  # fmt: skip
from .support import needs_root as root_only

needs_root = root_only("rlimits, setpriv and capabilities need root")
NOGROUP = 65534
LINGER = 2.0  # the service's default --linger


def connect(port: int, timeout: float = 15.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def settle_children(pid: int, timeout: float = 10.0) -> list[tuple[int, str]]:
    deadline = time.monotonic() + timeout
    while (found := children(pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def set_rlimit(pid: int, which: str, value: str) -> None:
    subprocess.run(["prlimit", "--pid", str(pid), f"--{which}={value}"], check=True, timeout=10)


def nofile_hard(pid: int) -> str:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return line.split()[4]
    raise AssertionError(f"no open files limit for {pid}")


# -- 1,000 silent connections while 10,000 normal ones are answered ---------------------


@pytest.mark.parametrize("mode", MODES)
def test_silent_thousand_do_not_stop_ten_thousand_and_are_closed_within_linger(mode: str) -> None:
    rate = 2000 if mode == "in-process" else 1000  # fork mode tops out near 900/s here
    with serving(mode) as (svc, port), ExitStack() as stack:
        silent = [stack.enter_context(connect(port)) for _ in range(1000)]
        ours = {sock.getsockname()[1] for sock in silent}
        first_seen: dict[int, float] = {}
        last_seen: dict[int, float] = {}
        with (
            draining(svc),
            Background("127.0.0.1", port, rate=rate, count=10_000, timeout=30) as load,
        ):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                now = time.monotonic()
                held = held_peers(port) & ours
                for p in held:
                    first_seen.setdefault(p, now)
                    last_seen[p] = now
                if not held and len(first_seen) == len(ours):
                    break
                time.sleep(0.2)
            result = load.result()
        # Every silent connection was held by the service, then let go within the linger
        # bound (sampled every 0.2 s; generous slack for a busy 2-core machine).
        assert set(first_seen) == ours, f"{len(ours - set(first_seen))} never seen held"
        assert not held_peers(port) & ours, "silent connections still held"
        longest = max(last_seen[p] - first_seen[p] for p in ours)
        assert longest < LINGER + 3.0, f"a silent connection was held {longest:.1f} s"
        assert result.ok == 10_000 and result.errors == 0, result
        for sock in silent:  # each silent client was sent its line and a clean FIN
            sock.settimeout(5)
            assert CTIME.match(read_to_eof(sock))
        assert svc.proc.poll() is None
        assert settle_children(svc.pid) == []


# -- hostile clients ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_hostile_clients_do_not_hurt_it_and_talkative_ones_get_a_clean_answer(mode: str) -> None:
    with serving(mode) as (svc, port), ExitStack() as stack:
        # 1. Clients that are gone before the service accepts them: stop it, queue them up.
        svc.signal(signal.SIGSTOP)
        try:
            keep: list[socket.socket] = []
            for i in range(240):
                sock = connect(port)
                kind = i % 6
                if kind == 0:
                    reset(sock)  # RST while still in the backlog
                elif kind == 1:
                    sock.close()  # FIN while still in the backlog
                elif kind == 2:
                    sock.sendall(b"x" * 1000)
                    reset(sock)  # talked, then RST, before accept
                elif kind == 3:
                    stack.enter_context(sock).sendall(b"what time is it?\r\n")
                    keep.append(sock)
                elif kind == 4:
                    stack.enter_context(sock).shutdown(socket.SHUT_WR)  # half-close first
                    keep.append(sock)
                else:
                    keep.append(stack.enter_context(sock))  # an ordinary client, waiting
        finally:
            svc.signal(signal.SIGCONT)
        for sock in keep:  # raises ConnectionResetError on RST
            assert CTIME.match(read_to_eof(sock))

        # 2. The same kinds against a running service, interleaved with normal clients.
        for i in range(300):
            sock = connect(port)
            kind = i % 5
            if kind == 0:
                reset(sock)  # connect and RST at once
            elif kind == 1:
                sock.sendall(b"\x00\xff" * 5000)
                reset(sock)  # send first, then RST without reading
            elif kind == 2:
                with sock:
                    assert sock.recv(100)  # took the line, then RST during the linger
                    reset(sock)
            elif kind == 3:
                with sock:  # send first and half-close: line and clean EOF
                    sock.sendall(b"hello\r\n" * 100)
                    sock.shutdown(socket.SHUT_WR)
                    assert CTIME.match(read_to_eof(sock))
            else:
                sock.close()
                assert CTIME.match(query("127.0.0.1", port))
        result = run_load("127.0.0.1", port, rate=1000, count=500)
        assert result.ok == 500 and result.errors == 0, result
        assert svc.proc.poll() is None
        assert settle_children(svc.pid) == []
    assert "Traceback" not in svc.stderr


# -- file descriptor exhaustion ------------------------------------------------------------


def lowest_free_fd(pid: int) -> int:
    used = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    return min(set(range(len(used) + 1)) - used)


@needs_root
@pytest.mark.parametrize("mode", MODES)
def test_emfile_pauses_without_spinning_says_so_once_and_recovers(mode: str) -> None:
    """No descriptor to accept into, nothing lingering to shed: the classic accept spin."""
    with serving(mode) as (svc, port), ExitStack() as stack:
        # Only the soft limit: raising a hard limit again needs CAP_SYS_RESOURCE.
        hard = nofile_hard(svc.pid)
        set_rlimit(svc.pid, "nofile", f"{lowest_free_fd(svc.pid)}:{hard}")
        waiting = [stack.enter_context(connect(port)) for _ in range(50)]  # into the backlog
        time.sleep(0.5)
        started, used = time.monotonic(), cpu_seconds(svc.pid)
        time.sleep(1.5)
        busy = (cpu_seconds(svc.pid) - used) / (time.monotonic() - started)
        assert busy < 0.3, f"{busy:.0%} CPU while out of descriptors"  # a spin is ~100%
        assert svc.proc.poll() is None
        assert svc.stderr.count("Too many open files") == 1, svc.stderr
        set_rlimit(svc.pid, "nofile", f"{hard}:{hard}")  # descriptors free again
        for sock in waiting:
            assert CTIME.match(read_to_eof(sock))
        assert CTIME.match(query("127.0.0.1", port))
        assert svc.stderr.count("Too many open files") == 1, svc.stderr
        assert "available again" in svc.stderr


@needs_root
@pytest.mark.parametrize("mode", MODES)
def test_more_clients_than_descriptors_all_answered_logged_once(mode: str) -> None:
    """RLIMIT_NOFILE 20 and 200 clients that talk and never close (linger 30 s)."""
    wrap = ["prlimit", "--nofile=20:20"]
    with serving(mode, "--linger", "30", wrap=wrap) as (svc, port), ExitStack() as stack:
        clients = []
        for _ in range(200):
            sock = stack.enter_context(connect(port))
            sock.sendall(b"hello?")
            clients.append(sock)
        started, used = time.monotonic(), cpu_seconds(svc.pid)
        time.sleep(1.5)
        busy = (cpu_seconds(svc.pid) - used) / (time.monotonic() - started)
        assert busy < 0.3, f"{busy:.0%} CPU while short of descriptors"
        for sock in clients:  # every one got its line (the oldest were shed, not reset)
            assert CTIME.match(sock.recv(100))
        for sock in clients:
            sock.close()
        assert CTIME.match(query("127.0.0.1", port))
        assert svc.proc.poll() is None
        assert "Traceback" not in svc.stderr
        # Descriptors did run out (200 clients, 20 descriptors), and that was said once.
        assert svc.stderr.count("Too many open files") == 1, svc.stderr


# -- fork failure --------------------------------------------------------------------------


@needs_root
def test_fork_failure_is_logged_and_every_connection_still_answered() -> None:
    """RLIMIT_NPROC 2 for an otherwise unused uid, and a second process of that uid holding
    the other slot: every fork(2) fails with EAGAIN until that process exits.  (Root ignores
    RLIMIT_NPROC, and the limit of another uid's process cannot be raised later without
    CAP_SYS_RESOURCE, so freeing the slot is how processes become available again.)
    """
    as_spare = ["setpriv", f"--reuid={spare_uid()}", f"--regid={NOGROUP}", "--clear-groups"]
    holder = subprocess.Popen([*as_spare, "sleep", "120"], stdin=subprocess.DEVNULL)
    try:
        with serving("fork", wrap=["prlimit", "--nproc=2:2", *as_spare]) as (svc, port):
            result = run_load("127.0.0.1", port, rate=500, count=300)
            assert result.ok == 300 and result.errors == 0, result
            assert svc.stderr.count("fork failed") == 1, svc.stderr  # not once per connection
            assert "Resource temporarily unavailable" in svc.stderr
            assert children(svc.pid) == []
            holder.kill()  # a process slot is free again: forking resumes
            holder.wait(10)
            seen = 0
            with Background("127.0.0.1", port, rate=500, duration=2.0) as load:
                while not load.stopped.is_set():
                    seen += len(children(svc.pid))
                result = load.result()
            assert result.errors == 0 and result.ok == result.started, result
            assert seen > 0, "no child seen after the process slot was freed"
            assert svc.proc.poll() is None
            assert settle_children(svc.pid) == []
            assert "Traceback" not in svc.stderr
    finally:
        holder.kill()
        holder.wait(10)


# -- signals under load ----------------------------------------------------------------------


# Both signals in both modes without load are in test_lifecycle; here one of each per mode.
@pytest.mark.parametrize(
    ("mode", "signum"), [("in-process", signal.SIGTERM), ("fork", signal.SIGINT)]
)
def test_stop_signal_under_load_answers_in_flight_and_exits_0(mode: str, signum: int) -> None:
    with serving(mode) as (svc, port), ExitStack() as stack:
        # Slow readers in flight as well: connected, talking, not reading yet.
        slow = [stack.enter_context(connect(port)) for _ in range(20)]
        for sock in slow:
            sock.sendall(b"x" * 10_000)
        with Background("127.0.0.1", port, rate=1000, duration=30) as load:
            time.sleep(1.0)
            load.halt()  # no new connection after this point; the open ones are in flight
            svc.signal(signum)
            result = load.result()
        assert result.errors == 0 and result.ok == result.started > 500, result
        for sock in slow:
            assert CTIME.match(read_to_eof(sock))
        assert svc.wait() == 0
        assert signal.Signals(signum).name in svc.notify.wait_for("STOPPING=1")
        assert "Traceback" not in svc.stderr


# The other signal of each mode than under load above: each mode sees both.
@pytest.mark.parametrize(
    ("mode", "signum"), [("in-process", signal.SIGINT), ("fork", signal.SIGTERM)]
)
def test_stop_signal_answers_a_backlog_larger_than_one_accept_batch(mode: str, signum: int) -> None:
    """200 clients queued in the backlog (the service stopped) when the signal arrives."""
    with serving(mode) as (svc, port), ExitStack() as stack:
        svc.signal(signal.SIGSTOP)
        try:
            queued = [stack.enter_context(connect(port)) for _ in range(200)]
            svc.signal(signum)
        finally:
            svc.signal(signal.SIGCONT)
        answered = reset = 0
        for sock in queued:
            try:
                answered += bool(CTIME.match(read_to_eof(sock)))
            except ConnectionResetError:
                reset += 1
        assert (answered, reset) == (200, 0)
        assert svc.wait() == 0
        assert signal.Signals(signum).name in svc.notify.wait_for("STOPPING=1")


@pytest.mark.parametrize("mode", MODES)
def test_sighup_and_sigpipe_under_load_do_not_kill_it(mode: str) -> None:
    with serving(mode) as (svc, port):
        with Background("127.0.0.1", port, rate=1000, duration=1.5) as load:
            for _ in range(4):
                time.sleep(0.2)
                svc.signal(signal.SIGHUP)
                time.sleep(0.1)
                svc.signal(signal.SIGPIPE)  # sent with kill(2), not raised by a write
            result = load.result()
        assert result.errors == 0 and result.ok == result.started, result
        assert svc.proc.poll() is None
        assert CTIME.match(query("127.0.0.1", port))
        assert "SIGHUP" in svc.stderr
        assert "Traceback" not in svc.stderr
        assert not any("STOPPING=1" in m.split("\n") for m in svc.notify.poll(0.1))


# -- the notification socket ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["in-process"])  # the same Notifier in every mode
def test_a_notify_socket_nobody_reads_does_not_stall_serving(mode: str) -> None:
    """A busy or hung service manager must not stop the answers.

    A datagram queue holds net.unix.max_dgram_qlen (10) messages; with WATCHDOG_USEC=0.1 s
    the service kicks 20 times a second, so the queue is full after half a second.
    """
    with serving(mode, env={"WATCHDOG_USEC": "100000"}) as (svc, port):
        try:
            time.sleep(1.5)  # nobody reads the notify socket meanwhile
            result = run_load("127.0.0.1", port, rate=200, count=100, timeout=3)
            assert result.ok == 100 and result.errors == 0, result
            assert svc.proc.poll() is None
        finally:
            with draining(svc):  # unblock it, so that it can be stopped quickly
                svc.stop()


# -- --user: what the dropped process can no longer do ----------------------------------------


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, v in (line.split(":", 1) for line in f.read().splitlines())}


@needs_root
@pytest.mark.parametrize("fork", ["--fork", "--no-fork"])
def test_user_keeps_no_capability_to_bind_below_1024(fork: str) -> None:
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        unprivileged_start = int(f.read())
    if unprivileged_start <= 13:
        pytest.skip(f"ip_unprivileged_port_start={unprivileged_start}: anyone may bind 13")
    nobody = pwd.getpwnam("nobody")
    port = free_port()
    argv = ["--listen", "127.0.0.1", "--port", str(port), "--user", "nobody", fork]
    with service(argv) as svc:
        assert CTIME.match(query("127.0.0.1", port))
        status = proc_status(svc.pid)
        assert status["Uid"].split() == [str(nobody.pw_uid)] * 4  # saved uid too: no way back
        assert "0" not in status["Groups"].split()
        # No capability at all: CAP_NET_BIND_SERVICE in particular, nor one to regain it.
        for caps in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
            assert int(status[caps], 16) == 0, (caps, status[caps])
        assert svc.proc.poll() is None


@needs_root
@pytest.mark.parametrize("missing", ["setgid", "setuid"])
def test_user_refuses_to_serve_when_the_drop_fails(missing: str) -> None:
    """Root without CAP_SETGID (initgroups fails) or CAP_SETUID (setuid fails)."""
    port = free_port()
    argv = [
        "setpriv", f"--bounding-set=-{missing}", f"--inh-caps=-{missing}",
        PYTHON, "-m", "daytime_sd", "--listen", "127.0.0.1", "--port", str(port),
        "--user", "nobody",
    ]  # fmt: skip
    proc = subprocess.run(
        argv, env=base_env(), cwd=REPO, capture_output=True, text=True, timeout=20,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 1, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("daytime-sd: error: "), proc.stderr
    assert "--user nobody" in lines[0] and "cannot drop privileges" in lines[0]
    assert "Traceback" not in proc.stderr
    with pytest.raises(ConnectionRefusedError):  # and it is not serving anything
        query("127.0.0.1", port, timeout=2)
