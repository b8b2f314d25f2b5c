# SPDX-License-Identifier: MIT
"""Misbehaving and demanding clients, in each serving mode."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

import pytest

from .support import CTIME, Service, children, free_port, open_fds, query, read_to_eof, service

MODES = ["in-process", "fork", "accept"]


@contextmanager
def running(mode: str, *extra: str) -> Iterator[tuple[Service, int]]:
    port = free_port()
    if mode == "in-process":
        with service(list(extra), activate=["-l", f"127.0.0.1:{port}"]) as svc:
            assert CTIME.match(query("127.0.0.1", port))
            svc.ready()
            yield svc, port
    elif mode == "fork":
        with service(["--listen", "127.0.0.1", "--port", str(port), "--fork", *extra]) as svc:
            yield svc, port
    else:
        with service(list(extra), activate=["--accept", "-l", f"127.0.0.1:{port}"]) as svc:
            yield svc, port


# A client that sends a mebibyte (or any input) before reading, and goes on writing after
# the line: test_wire.py::test_a_talkative_client_gets_the_whole_line_eof_and_no_reset.


@pytest.mark.parametrize("mode", ["in-process", "fork"])
def test_silent_clients_do_not_delay_a_normal_one(mode: str) -> None:
    with running(mode, "--linger", "30") as (_svc, port), ExitStack() as stack:
        silent = []
        for _ in range(200):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
            sock.sendall(b"hello?")  # talks, then never reads nor closes
            silent.append(sock)
        started = time.monotonic()
        for _ in range(20):
            assert CTIME.match(query("127.0.0.1", port, timeout=5))
        assert time.monotonic() - started < 5  # generous: each answer takes milliseconds
        for sock in silent[:5]:  # and each silent one did get its line
            sock.settimeout(5)
            assert CTIME.match(sock.recv(100))


def test_lingering_silent_clients_are_closed_within_the_bound() -> None:
    linger = 3.0  # the sends below end at 1 s: a stalled test still sends within the bound
    with running("in-process", "--linger", str(linger)) as (_svc, port):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        with sock:
            sock.sendall(b"never closing")
            started = time.monotonic()
            assert CTIME.match(read_to_eof(sock))
            # EOF comes with the line, not when the linger bound runs out.
            assert time.monotonic() - started < linger / 2
            # Lingering: the server still reads and discards what we send (a closed socket
            # would answer the first send with RST and the next one would raise EPIPE).
            for at in (0.2, 0.5, 0.8, 1.0):
                time.sleep(max(0.0, started + at - time.monotonic()))
                sock.sendall(b"more")
            # After the bound it is gone for good: a send fails (RST, then EPIPE).
            sock.setblocking(False)
            time.sleep(max(0.0, started + linger - time.monotonic()))
            gone_at = None
            while gone_at is None and time.monotonic() < started + linger + 8:
                try:
                    sock.send(b"more")
                except OSError:
                    gone_at = time.monotonic() - started
                time.sleep(0.1)
            assert gone_at is not None, "still open long after the linger bound"


def test_ten_thousand_forks_leave_no_zombie_and_no_fd_growth() -> None:
    port = free_port()
    with service(["--listen", "127.0.0.1", "--port", str(port), "--fork"]) as svc:
        before = open_fds(svc.pid)  # ready, nothing connected yet

        def batch(n: int) -> int:
            ok = 0
            for _ in range(n):
                ok += bool(CTIME.match(query("127.0.0.1", port, timeout=30)))
            return ok

        with ThreadPoolExecutor(8) as pool:
            assert sum(pool.map(batch, [1250] * 8)) == 10_000
        deadline = time.monotonic() + 10  # the last connections may still be lingering
        while (children(svc.pid) or open_fds(svc.pid) != before) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert children(svc.pid) == []
        assert open_fds(svc.pid) == before
        assert svc.proc.poll() is None


def test_max_children_queues_connections_instead_of_refusing() -> None:
    port = free_port()
    argv = ["--listen", "127.0.0.1", "--port", str(port), "--fork", "--max-children", "1"]
    with service(argv) as svc:
        most = 0
        with ThreadPoolExecutor(16) as pool:
            results = pool.map(lambda _: query("127.0.0.1", port, timeout=30), range(400))
            for line in results:
                assert CTIME.match(line)
                most = max(most, len(children(svc.pid)))
        assert most <= 1  # children of the service, sampled while the load ran
        assert svc.proc.poll() is None
