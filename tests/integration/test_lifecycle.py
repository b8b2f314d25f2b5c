# SPDX-License-Identifier: MIT
"""sd_notify messages, signals, idle exit: caught on a real NOTIFY_SOCKET."""

from __future__ import annotations

import itertools
import select
import signal
import socket
import threading
import time
from contextlib import ExitStack

import pytest

from .support import CTIME, Service, free_port, query, read_to_eof, service


def test_ready_and_status_are_sent() -> None:
    port = free_port()
    with service(["--listen", "127.0.0.1", "--port", str(port)]) as svc:
        ready = svc.notify.wait_for("READY=1")
        assert f"STATUS=Serving tcp 127.0.0.1:{port} (fork per connection)" in ready
        for _ in range(3):
            query("127.0.0.1", port)
        # STATUS follows the count, at most once a second
        deadline = time.monotonic() + 5
        while not any("3 TCP connections" in m for m in svc.notify.poll(0.2)):
            assert time.monotonic() < deadline, svc.notify.messages


def timed_messages(svc: Service, seconds: float) -> list[tuple[float, str]]:
    """(arrival time, message) of every notification within ``seconds`` from now."""
    got: list[tuple[float, str]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([svc.notify.sock], [], [], left)
        if ready:
            got.append((time.monotonic(), svc.notify.sock.recv(65536).decode()))
    return got


def test_watchdog_is_kicked_at_half_the_interval() -> None:
    port = free_port()
    activate = ["-l", f"127.0.0.1:{port}"]
    # WATCHDOG_USEC 0.8 s: kicks every 0.4 s; at the full interval they would be 0.8 s apart.
    with service([], activate=activate, env={"WATCHDOG_USEC": "800000"}) as svc:
        assert CTIME.match(query("127.0.0.1", port))
        svc.ready()
        kicks = [t for t, m in timed_messages(svc, 3.0) if "WATCHDOG=1" in m.split("\n")]
        gaps = sorted(b - a for a, b in itertools.pairwise(kicks))
        assert len(gaps) >= 3, kicks
        median = gaps[len(gaps) // 2]
        # A loaded machine delays a kick now and then, so the median, with room both ways.
        assert 0.25 <= median <= 0.6, gaps


def test_watchdog_pid_of_another_process_is_ignored() -> None:
    port = free_port()
    argv = ["--listen", "127.0.0.1", "--port", str(port)]
    env = {"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}  # addressed to PID 1, not to us
    with service(argv, env=env) as svc:
        assert CTIME.match(query("127.0.0.1", port))
        messages = [m for _t, m in timed_messages(svc, 1.5)]
        assert not any("WATCHDOG=1" in m.split("\n") for m in messages), messages
    # and addressed to it (sh execs the service, so $$ is its pid), it does kick
    with service(
        argv,
        env={"WATCHDOG_USEC": "200000"},
        inner=["sh", "-c", 'export WATCHDOG_PID=$$; exec "$@"', "sh"],
    ) as svc:
        messages = [m for _t, m in timed_messages(svc, 1.5)]
        assert any("WATCHDOG=1" in m.split("\n") for m in messages), messages


def test_status_is_sent_at_most_once_a_second() -> None:
    port = free_port()
    with service(["--listen", "127.0.0.1", "--port", str(port), "--no-fork"]) as svc:
        done = threading.Event()

        def load() -> None:  # the count changes all the time: STATUS= always wants out
            while not done.is_set():
                query("127.0.0.1", port)

        worker = threading.Thread(target=load, daemon=True)
        worker.start()
        try:
            messages = timed_messages(svc, 4.0)  # read as they arrive, meanwhile
        finally:
            done.set()
            worker.join(15)
        statuses = [t for t, m in messages if "READY=1" not in m and "STATUS=" in m]
        gaps = [b - a for a, b in itertools.pairwise(statuses)]
        assert len(statuses) >= 2, messages  # it does report the changing count
        # 0.8: arrival times carry the test's own scheduling jitter, not the service's
        assert min(gaps) >= 0.8, gaps


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("mode", ["--no-fork", "--fork"])
def test_stop_signal_answers_everything_in_flight_then_exits_0(signum: int, mode: str) -> None:
    port = free_port()
    with service(["--listen", "127.0.0.1", "--port", str(port), mode]) as svc, ExitStack() as st:
        # 50 clients connected (some accepted, most still in the backlog), none read yet;
        # half of them talk first.
        clients = []
        for i in range(50):
            sock = st.enter_context(socket.create_connection(("127.0.0.1", port), timeout=15))
            if i % 2:
                sock.sendall(b"what time is it?" * 100)
            clients.append(sock)
        svc.signal(signum)
        for sock in clients:
            assert CTIME.match(read_to_eof(sock))
        assert svc.wait() == 0
        stopping = svc.notify.wait_for("STOPPING=1")
        assert signal.Signals(signum).name in stopping
        assert "Traceback" not in svc.stderr


def test_sighup_does_not_stop_it() -> None:
    port = free_port()
    with service(["--listen", "127.0.0.1", "--port", str(port), "--no-fork"]) as svc:
        svc.signal(signal.SIGHUP)
        time.sleep(0.3)
        assert CTIME.match(query("127.0.0.1", port))
        assert svc.proc.poll() is None
        assert "SIGHUP" in svc.stderr


@pytest.mark.parametrize("mode", ["--no-fork", "--fork"])
@pytest.mark.parametrize("late", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
def test_signals_while_it_stops_are_still_handled(mode: str, late: int) -> None:
    """A reload racing a stop (SIGTERM, then SIGHUPs until it is gone) still exits 0.

    Issue 21.9: CPython puts SIG_DFL back for every signal with a Python handler as the
    interpreter finalizes, so a SIGHUP in that window killed the process (status 129).
    """
    port = free_port()
    with service(["--listen", "127.0.0.1", "--port", str(port), mode]) as svc:
        assert CTIME.match(query("127.0.0.1", port))
        svc.signal(signal.SIGTERM)
        sent = 0
        while svc.proc.poll() is None and sent < 100_000:
            try:
                svc.signal(late)
            except ProcessLookupError:
                break
            sent += 1
            time.sleep(0.0002)
        assert svc.wait() == 0, (sent, svc.stderr)
        assert sent > 0
        assert "Traceback" not in svc.stderr


def test_idle_timeout_exits_and_the_socket_keeps_the_next_client() -> None:
    """The test holds the listening socket, as systemd's PID 1 does: a client that connects
    after the idle exit waits in the backlog and the next instance answers it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        fd = listener.fileno()
        # bash, not sh: dash cannot name a descriptor above 9 in a redirection
        as_systemd = ["bash", "-c", f'exec 3<&{fd}; export LISTEN_PID=$$ LISTEN_FDS=1; exec "$@"']
        with service(["--idle-timeout", "0.5"], inner=[*as_systemd, "bash"], pass_fds=[fd]) as svc:
            assert CTIME.match(query("127.0.0.1", port))
            svc.notify.wait_for("STOPPING=1", timeout=10)
            assert svc.wait() == 0
            assert "idle for 0.5 s" in svc.stderr
        # Nobody serves the port now; the kernel queues the next client all the same.
        with socket.create_connection(("127.0.0.1", port), timeout=15) as waiting:
            waiting.sendall(b"anyone?")
            with service(
                ["--idle-timeout", "0.5"], inner=[*as_systemd, "bash"], pass_fds=[fd],
                wait_ready=False,
            ) as svc:  # fmt: skip
                assert CTIME.match(read_to_eof(waiting))
                waiting.close()
                svc.notify.wait_for("STOPPING=1", timeout=10)
                assert svc.wait() == 0
                assert "idle for 0.5 s; 1 TCP connections answered" in svc.stderr


def test_idle_timeout_is_ignored_when_standalone() -> None:
    port = free_port()
    argv = ["--listen", "127.0.0.1", "--port", str(port), "--idle-timeout", "0.2"]
    with service(argv) as svc:
        time.sleep(0.8)
        assert svc.proc.poll() is None
        assert CTIME.match(query("127.0.0.1", port))


def test_udp_traffic_keeps_the_idle_timeout_away() -> None:
    port = free_port()
    activate = ["--datagram", "-l", f"127.0.0.1:{port}"]
    with service(["--idle-timeout", "0.8"], activate=activate) as svc:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(5)
            for _ in range(12):  # 2.4 s of traffic, three times the idle timeout
                client.sendto(b"", ("127.0.0.1", port))
                assert CTIME.match(client.recvfrom(100)[0])
                time.sleep(0.2)
            assert svc.proc.poll() is None
        svc.notify.wait_for("STOPPING=1", timeout=10)  # quiet now: it exits
        assert svc.wait() == 0
