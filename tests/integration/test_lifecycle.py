"""sd_notify messages, signals, idle exit: caught on a real NOTIFY_SOCKET."""

from __future__ import annotations

import signal
import socket
import time
from contextlib import ExitStack

import pytest

from .support import CTIME, free_port, query, read_to_eof, service


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


def test_watchdog_is_kicked_at_half_the_interval() -> None:
    port = free_port()
    activate = ["-l", f"127.0.0.1:{port}"]
    with service([], activate=activate, env={"WATCHDOG_USEC": "400000"}) as svc:
        assert CTIME.match(query("127.0.0.1", port))
        svc.ready()
        time.sleep(1.1)
        kicks = [m for m in svc.notify.poll(0.1) if "WATCHDOG=1" in m.split("\n")]
        assert 3 <= len(kicks) <= 8, svc.notify.messages  # every 0.2 s: about 5 in 1.1 s


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


def test_idle_timeout_exits_and_the_socket_keeps_the_next_client() -> None:
    port = free_port()
    activate = ["-l", f"127.0.0.1:{port}"]
    with service(["--idle-timeout", "0.5"], activate=activate) as svc:
        assert CTIME.match(query("127.0.0.1", port))
        svc.ready()
        svc.notify.wait_for("STOPPING=1", timeout=10)
        time.sleep(0.3)
        # systemd-socket-activate execs the service, so exiting ends the activator too;
        # what matters is that the exit was clean and nothing was left half-answered.
        assert svc.wait() == 0
        assert "idle for 0.5 s" in svc.stderr


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
