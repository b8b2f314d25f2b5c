"""Issue 6, UDP: loop protection, reflection cap, any datagram size, no starvation by a flood.

Standalone ``--udp`` and socket-activated ``systemd-socket-activate --datagram``; sources on
127.0.0.2 and 127.0.0.3 are separate addresses for the per-source cap (all of 127/8 is
loopback).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from .support import CTIME, PYTHON, Service, free_port, needs_root, service

MODES = ["standalone", "activated"]


def udp_socket(source: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((source, port))
    return sock


def replies(sock: socket.socket, wait: float, until: int = 1_000_000) -> list[bytes]:
    """The datagrams that arrive within ``wait`` seconds (returns early at ``until``)."""
    got: list[bytes] = []
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0 and len(got) < until:
        sock.settimeout(left)
        try:
            got.append(sock.recv(65535))
        except TimeoutError:
            break
    return got


def ask(port: int, source: str = "127.0.0.1", payload: bytes = b"", wait: float = 5.0) -> bytes:
    with udp_socket(source) as sock:
        sock.sendto(payload, ("127.0.0.1", port))
        sock.settimeout(wait)
        return sock.recv(65535)


@contextmanager
def serving_udp(mode: str, *extra: str) -> Iterator[tuple[Service, int]]:
    port = free_port()
    if mode == "standalone":
        argv = ["--listen", "127.0.0.1", "--port", str(port), "--udp", *extra]
        with service(argv) as svc:
            yield svc, port
    else:
        activate = ["--datagram", "-l", f"127.0.0.1:{port}"]
        with service(list(extra), activate=activate) as svc:
            assert CTIME.match(ask(port, "127.0.0.4"))  # the first datagram starts it
            svc.ready()
            yield svc, port


@needs_root("binding a source port below 1024 needs root")
@pytest.mark.parametrize("mode", MODES)
def test_no_reply_to_a_source_port_below_1024(mode: str) -> None:
    with serving_udp(mode, "--udp-rate", "100") as (svc, port):
        for low in (999, 1023):
            with udp_socket("127.0.0.1", low) as sock:
                for _ in range(3):
                    sock.sendto(b"ping", ("127.0.0.1", port))
                assert replies(sock, 0.5) == [], f"answered source port {low}"
        assert CTIME.match(ask(port, payload=b"ping"))  # alive, and 1024+ is answered
        with udp_socket("127.0.0.1", 1024) as sock:
            sock.sendto(b"", ("127.0.0.1", port))
            assert len(replies(sock, 5.0, until=1)) == 1
        assert svc.proc.poll() is None


@pytest.mark.parametrize("mode", MODES)
def test_replies_per_source_are_capped(mode: str) -> None:
    with serving_udp(mode, "--udp-rate", "3") as (_svc, port), udp_socket("127.0.0.2") as sock:
        for _ in range(50):
            sock.sendto(b"", ("127.0.0.1", port))
        got = replies(sock, 0.5)
        # At most 3 per one-second window; a burst of milliseconds touches at most two.
        assert 1 <= len(got) <= 6, len(got)
        assert all(CTIME.match(line) for line in got)
        assert CTIME.match(ask(port, "127.0.0.3"))  # another source has its own budget
        time.sleep(1.1)  # a new window: the capped source is answered again
        sock.sendto(b"", ("127.0.0.1", port))
        assert len(replies(sock, 5.0, until=1)) == 1


@pytest.mark.parametrize("mode", MODES)
def test_datagrams_of_every_size_are_answered(mode: str) -> None:
    with serving_udp(mode, "--udp-rate", "1000") as (svc, port), udp_socket() as sock:
        for size in (0, 1, 2, 512, 1472, 1473, 9000, 65507):  # 65,507: IPv4's largest
            sock.sendto(os.urandom(size), ("127.0.0.1", port))
            got = replies(sock, 5.0, until=1)
            got += replies(sock, 0.05)  # and only one
            assert len(got) == 1 and CTIME.match(got[0]), (size, got)
        with pytest.raises(OSError):  # one byte more cannot even be sent
            sock.sendto(b"x" * 65508, ("127.0.0.1", port))
        assert svc.proc.poll() is None


FLOOD = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.2", 0))
s.setblocking(False)
target = ("127.0.0.1", int(sys.argv[1]))
end = time.monotonic() + float(sys.argv[2])
sent = 0
report = time.monotonic()
while time.monotonic() < end:
    if time.monotonic() > report:
        print(sent, flush=True)
        report += 0.25
    for _ in range(100):
        try:
            s.sendto(b"flood", target)
            sent += 1
        except BlockingIOError:
            pass
    try:  # the capped replies: drop them
        while s.recv(100):
            pass
    except BlockingIOError:
        pass
print(sent, flush=True)
"""


@pytest.mark.parametrize("mode", MODES)
def test_a_flood_from_one_source_does_not_starve_another(mode: str) -> None:
    with serving_udp(mode, "--udp-rate", "20") as (svc, port):
        flood = subprocess.Popen(
            [PYTHON, "-c", FLOOD, str(port), "30"], stdout=subprocess.PIPE, text=True
        )
        try:
            assert flood.stdout is not None
            flood.stdout.readline()
            sent = int(flood.stdout.readline())
            assert sent > 0  # the flood is on
            answered = 0
            with udp_socket("127.0.0.3") as sock:
                for _ in range(10):
                    # A datagram may be lost with the socket buffer full of flood: the
                    # client retries, as UDP clients do; each try waits 0.3 s.
                    for _try in range(5):
                        sock.sendto(b"", ("127.0.0.1", port))
                        got = replies(sock, 0.3, until=1)
                        if got:
                            assert CTIME.match(got[0])
                            answered += 1
                            break
            assert flood.poll() is None, "flood ended before the queries did"
        finally:
            flood.terminate()
            out, _ = flood.communicate(timeout=30)
        sent = max([sent, *map(int, out.split())])
        assert sent > 10_000, f"the flood sent only {sent} datagrams"
        assert answered == 10
        assert svc.proc.poll() is None
