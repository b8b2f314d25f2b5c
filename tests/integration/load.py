# SPDX-License-Identifier: MIT
"""A paced, non-blocking TCP load client for the abuse and soak tests (loopback only).

One thread, one selector: connections are started at a fixed rate (catching up if the
machine stalls), each reads to EOF and is checked for exactly one valid line, and every
outcome is counted.  Nothing blocks, so a stalled service shows up as timeouts, not as a
hung test.
"""

from __future__ import annotations

import errno
import os
import re
import selectors
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from .support import CTIME, Service, free_port, query, service


@dataclass
class LoadResult:
    started: int = 0
    ok: int = 0
    refused: int = 0  # ECONNREFUSED: nobody listening
    reset: int = 0  # ECONNRESET or EPIPE before the line and EOF
    timeout: int = 0  # no EOF within the per-connection timeout
    bad: int = 0  # EOF after something that is not exactly one valid line
    other: int = 0  # any other error (EADDRNOTAVAIL, ...)
    elapsed: float = 0.0
    samples: list[str] = field(default_factory=list)  # a few failures, for the message

    @property
    def errors(self) -> int:
        return self.refused + self.reset + self.timeout + self.bad + self.other

    @property
    def offered_rate(self) -> float:
        return self.started / self.elapsed if self.elapsed else 0.0

    def note(self, what: str) -> None:
        if len(self.samples) < 10:
            self.samples.append(what)


class _Conn:
    __slots__ = ("buf", "deadline", "sock")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buf = b""


def run_load(
    host: str,
    port: int,
    *,
    rate: float,
    count: int | None = None,
    duration: float | None = None,
    timeout: float = 15.0,
    max_open: int = 4000,
    stop: threading.Event | None = None,
    stopped: threading.Event | None = None,
    pattern: re.Pattern[bytes] = CTIME,
) -> LoadResult:
    """Open ``count`` connections (or for ``duration`` seconds) at ``rate`` per second.

    ``stop`` set by another thread ends the starting of new connections early; ``stopped``
    is set once no new connection will be started (the open ones are still finished).
    """
    assert count is not None or duration is not None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    addr = (host, port)
    result = LoadResult()
    sel = selectors.DefaultSelector()
    open_: dict[int, _Conn] = {}
    deadlines: deque[tuple[float, int, _Conn]] = deque()
    start = time.monotonic()
    end = start + duration if duration is not None else float("inf")
    target = count if count is not None else int(rate * (duration or 0))
    starting = True

    def finish(fd: int, conn: _Conn) -> None:
        sel.unregister(conn.sock)
        conn.sock.close()
        del open_[fd]

    def start_one(now: float) -> None:
        result.started += 1
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        err = sock.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            if err == errno.ECONNREFUSED:
                result.refused += 1
            else:
                result.other += 1
            result.note(f"connect: {errno.errorcode.get(err, err)}")
            return
        conn = _Conn(sock, now + timeout)
        open_[sock.fileno()] = conn
        deadlines.append((conn.deadline, sock.fileno(), conn))
        sel.register(sock, selectors.EVENT_READ)

    def on_readable(fd: int) -> None:
        conn = open_[fd]
        try:
            data = conn.sock.recv(4096)
        except BlockingIOError:
            return
        except ConnectionRefusedError:
            result.refused += 1
            result.note("refused")
        except (ConnectionResetError, BrokenPipeError):
            result.reset += 1
            result.note(f"reset after {conn.buf!r}")
        except OSError as err:
            result.other += 1
            result.note(f"recv: {err}")
        else:
            if data:
                conn.buf += data
                if len(conn.buf) <= 4096:
                    return
            if pattern.match(conn.buf):
                result.ok += 1
            else:
                result.bad += 1
                result.note(f"bad line {conn.buf[:100]!r}")
        finish(fd, conn)

    while True:
        now = time.monotonic()
        if starting and (
            result.started >= target or now >= end or (stop is not None and stop.is_set())
        ):
            starting = False
            if stopped is not None:
                stopped.set()
        wait = 0.05
        if starting:
            due = min(target, int((now - start) * rate) + 1)
            while result.started < due and len(open_) < max_open:
                start_one(now)
            wait = max(0.0, min(wait, start + (result.started) / rate - now))
        elif not open_:
            break
        for key, _events in sel.select(wait):
            on_readable(key.fd)
        now = time.monotonic()
        while deadlines and deadlines[0][0] <= now:
            _deadline, fd, conn = deadlines.popleft()
            if open_.get(fd) is conn:
                result.timeout += 1
                result.note(f"timeout after {conn.buf!r}")
                finish(fd, conn)
    result.elapsed = time.monotonic() - start
    sel.close()
    return result


class Background:
    """``run_load`` in a thread: ``with Background(...) as bg: ...; result = bg.result()``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        rate: float,
        count: int | None = None,
        duration: float | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.stop = threading.Event()
        self.stopped = threading.Event()
        self._result: LoadResult | None = None
        self._error: BaseException | None = None

        def target() -> None:
            try:
                self._result = run_load(
                    host, port, rate=rate, count=count, duration=duration, timeout=timeout,
                    stop=self.stop, stopped=self.stopped,
                )  # fmt: skip
            except BaseException as err:  # reported by result()
                self._error = err
                self.stopped.set()

        self._thread = threading.Thread(target=target, daemon=True)

    def __enter__(self) -> Background:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(120)

    def halt(self) -> None:
        """Stop starting connections and wait until no new one will be started."""
        self.stop.set()
        self.stopped.wait(30)

    def result(self, timeout: float = 120) -> LoadResult:
        """Wait for the run to end (``count``/``duration`` reached, or ``halt``)."""
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        assert self._result is not None, "load thread did not finish"
        return self._result


# -- the service under test, in the two modes issue 6 covers, and what /proc says about it --

MODES = ["in-process", "fork"]


@contextmanager
def serving(
    mode: str, *extra: str, wrap: Sequence[str] = (), env: dict[str, str] | None = None
) -> Iterator[tuple[Service, int]]:
    """``in-process``: Accept=no through systemd-socket-activate; ``fork``: standalone --fork."""
    port = free_port()
    if mode == "in-process":
        activate = ["-l", f"127.0.0.1:{port}"]
        with service(list(extra), activate=activate, wrap=wrap, env=env) as svc:
            assert CTIME.match(query("127.0.0.1", port))  # starts it
            svc.ready()
            yield svc, port
    else:
        argv = ["--listen", "127.0.0.1", "--port", str(port), "--fork", *extra]
        with service(argv, wrap=wrap, env=env) as svc:
            yield svc, port


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (its children not included)."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def held_peers(port: int) -> set[int]:
    """Peer ports of the connections to local ``port`` that some process holds open.

    Asked of the kernel with ss(8) (sock_diag, filtered in the kernel: cheap under load).
    A socket still in the accept queue, or closed by the service and left to the kernel
    (FIN-WAIT-2, TIME-WAIT), has no inode: it is not held.
    """
    out = subprocess.run(
        ["ss", "-Htne", "state", "connected", f"sport = :{port}"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    peers = set()
    for row in out.splitlines():
        cols = row.split()
        ino = next((c[4:] for c in cols if c.startswith("ino:")), "0")
        local = next((i for i, c in enumerate(cols) if c.endswith(f":{port}")), None)
        if ino != "0" and local is not None and local + 1 < len(cols):
            peers.add(int(cols[local + 1].rsplit(":", 1)[1]))
    return peers


@contextmanager
def draining(svc: Service) -> Iterator[None]:
    """Read the service's notifications in the background, as systemd would.

    ``support.Notifications`` reads only when asked, and a datagram queue holds only
    ``net.unix.max_dgram_qlen`` (10) messages.  Leave the block before calling
    ``svc.notify.wait_for``: two readers of one socket could block each other.
    """
    done = threading.Event()

    def drain() -> None:
        while not done.is_set():
            svc.notify.poll(0.1)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(5)
