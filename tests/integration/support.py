# SPDX-License-Identifier: MIT
"""Shared helpers for the integration tests: real processes, real sockets, loopback only."""

from __future__ import annotations

import contextlib
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import daytime_sd

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
CTIME = re.compile(rb"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d \d{4}\r\n$")
ACTIVATE = "/usr/bin/systemd-socket-activate"
# Any valid Daytime answer: one line of printable ASCII, CRLF-terminated.
LINE = re.compile(rb"^[\x20-\x7e]+\r\n$")


def needs_root(reason: str) -> pytest.MarkDecorator:
    """Skip without root, saying why; fail instead under ``CI`` (see conftest.py)."""
    return pytest.mark.needs_root(reason)


# Where the package under test is: the tree, or /usr/share/daytime-sd (the package's private
# directory) when the autopkgtest runs these tests against the installed package.
PACKAGE_DIR = str(Path(daytime_sd.__file__).resolve().parents[1])


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "NOTIFY_"))}
    env.pop("WATCHDOG_USEC", None)
    env.pop("JOURNAL_STREAM", None)
    env["PYTHONPATH"] = PACKAGE_DIR
    env.update(extra)
    return env


def free_port() -> int:
    """A port free on both 127.0.0.1 and ::1 right now."""
    for _ in range(100):
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6:
            s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s6.bind(("::1", 0))
            port: int = s6.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s4:
                try:
                    s4.bind(("127.0.0.1", port))
                except OSError:
                    continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u4:
                try:
                    u4.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port")


def query(host: str, port: int, timeout: float = 10.0, send: bytes = b"") -> bytes:
    """Connect, optionally send first, read to EOF.  Raises on reset or timeout."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        if send:
            sock.sendall(send)
        return read_to_eof(sock)


def read_to_eof(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    while True:
        data = sock.recv(4096)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class Notifications:
    """A real NOTIFY_SOCKET: an AF_UNIX datagram socket the service reports to."""

    def __init__(self) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="dsd-notify-")
        self.path = os.path.join(self.dir.name, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.dir.name, 0o755)
        os.chmod(self.path, 0o777)  # a service that dropped root must still reach it
        self.messages: list[str] = []

    def poll(self, timeout: float = 0.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.sock], [], [], remaining)
            if not ready:
                return self.messages
            self.messages.append(self.sock.recv(65536).decode())

    def wait_for(self, needle: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for msg in self.messages:
                if needle in msg.split("\n"):
                    return msg
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {needle!r} in notifications {self.messages!r}")
            self.poll(min(remaining, 0.2))

    def close(self) -> None:
        self.sock.close()
        self.dir.cleanup()


class Service:
    """daytime-sd (or systemd-socket-activate running it) as a child process."""

    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        notify: Notifications,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.notify = notify
        self.proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=REPO, pass_fds=pass_fds,
        )  # fmt: skip
        self._err: list[bytes] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._err.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr(self) -> str:
        return b"".join(self._err).decode(errors="replace")

    def ready(self, timeout: float = 15.0) -> None:
        self.notify.wait_for("READY=1", timeout)

    def wait_listening(self, count: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.stderr.count("Listening on") < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"systemd-socket-activate did not listen: {self.stderr}")
            time.sleep(0.01)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 15.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextlib.contextmanager
def service(
    args: Sequence[str],
    activate: Sequence[str] | None = None,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
    wrap: Sequence[str] = (),
    inner: Sequence[str] = (),
    pass_fds: Sequence[int] = (),
) -> Iterator[Service]:
    """Run ``python -m daytime_sd ARGS``, under ``systemd-socket-activate ACTIVATE`` if given.

    Standalone services are waited for with READY=1.  systemd-socket-activate execs its
    program only on the first connection, so the caller's first query starts it.
    """
    notify = Notifications()
    env = base_env(NOTIFY_SOCKET=notify.path, **(env or {}))
    argv = [*inner, PYTHON, "-m", "daytime_sd", *args]  # inner: e.g. sh redirecting fds
    if activate is not None:
        passed = [f"-E{k}={env[k]}" for k in ("PYTHONPATH", "NOTIFY_SOCKET", "TZ") if k in env]
        passed += [f"-E{k}={v}" for k, v in env.items() if k.startswith("WATCHDOG")]
        argv = [ACTIVATE, *activate, *passed, *argv]
    argv = [*wrap, *argv]  # e.g. unshare: it execs, so the pid stays the service's
    if activate is not None:
        # The service's only (-E above): systemd 262's systemd-socket-activate would also
        # send a READY=1 of its own ("Processing requests...") to a NOTIFY_SOCKET it has.
        env = {k: v for k, v in env.items() if k != "NOTIFY_SOCKET"}
    svc = Service(argv, env, notify, pass_fds)
    try:
        if wait_ready and activate is None:
            svc.ready()
        elif activate is not None:  # it execs the service on the first connection
            svc.wait_listening(sum(1 for a in activate if a == "-l" or a.startswith("--listen")))
        yield svc
    finally:
        svc.stop()
        notify.close()


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, state letter) of every child of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append((int(entry), fields[0]))
    return found


def spare_uid() -> int:
    """A uid no process uses, for RLIMIT_NPROC to count the service's processes only.

    Random, not fixed: RLIMIT_NPROC counts a uid's processes across every container that
    shares the kernel's user namespace, and make test runs the releases' autopkgtests (this
    test among them) in containers side by side.
    """
    rng = random.SystemRandom()
    while True:
        uid = rng.randrange(100_000, 1_000_000)
        try:
            owners = {os.stat(f"/proc/{p}").st_uid for p in os.listdir("/proc") if p.isdigit()}
        except FileNotFoundError:  # a process went away while we looked: look again
            continue
        if uid not in owners:
            return uid


@contextlib.contextmanager
def netns(setup: str) -> Iterator[list[str]]:
    """A network namespace of our own, configured by the shell commands ``setup``.

    Yields the command prefix (nsenter) that runs a program in it, as root of the initial user
    namespace, like every other test; the namespace goes when its holder process is killed.
    It comes with a user namespace: root in systemd-nspawn (the autopkgtest testbeds) has no
    CAP_NET_ADMIN, which a user namespace of our own grants over the network namespace it
    owns, so ``ip`` and ``sysctl`` work in it there too.  Its addresses exist only in it.
    """
    script = f"set -e\nip link set lo up\n{setup}\necho ready\nexec sleep 3600\n"
    env = dict(os.environ, PATH=f"/usr/sbin:/sbin:{os.environ.get('PATH', '/usr/bin:/bin')}")
    holder = subprocess.Popen(
        ["unshare", "--user", "--map-root-user", "--net", "sh", "-c", script],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        if holder.stdout.readline() != b"ready\n":
            holder.wait(10)
            assert holder.stderr is not None
            raise AssertionError(f"namespace setup failed: {holder.stderr.read().decode()}")
        yield ["nsenter", f"--net=/proc/{holder.pid}/ns/net"]
    finally:
        holder.kill()
        holder.wait()
        for stream in (holder.stdout, holder.stderr):
            if stream is not None:
                stream.close()


# Run in a namespace by in_netns(): asks every (source, destination, port) of argv's JSON
# at once, over connected sockets, and prints JSON {destination: first reply or error}.
ASK_ALL = r"""
import json, select, socket, sys, time
kind, queries = sys.argv[1], json.loads(sys.argv[2])
stream = kind == "tcp"
socks, got = {}, {}
for source, dest, port in queries:
    family, stype, proto, _, addr = socket.getaddrinfo(
        dest, port, 0, socket.SOCK_STREAM if stream else socket.SOCK_DGRAM, 0,
        socket.AI_NUMERICHOST)[0]
    sock = socket.socket(family, stype, proto)
    try:
        if source:
            sock.bind(socket.getaddrinfo(source, 0, family, stype, 0, socket.AI_NUMERICHOST)[0][4])
        sock.settimeout(5)
        sock.connect(addr)
        if not stream:
            sock.send(b"?")
    except OSError as err:
        got[dest] = f"error: {err}"
        sock.close()
        continue
    socks[sock] = dest
deadline = time.monotonic() + 5
while socks and (left := deadline - time.monotonic()) > 0:
    for sock in select.select(list(socks), [], [], left)[0]:
        dest = socks.pop(sock)
        try:
            data = sock.recv(4096)
            if stream:
                while more := sock.recv(4096):
                    data += more
            got[dest] = data.decode("ascii", "replace")
        except OSError as err:
            got[dest] = f"error: {err}"
        sock.close()
for dest in socks.values():
    got[dest] = "error: no reply"
print(json.dumps(got))
"""


def ask_in_netns(
    enter: Sequence[str], kind: str, queries: Sequence[tuple[str | None, str, int]]
) -> dict[str, str]:
    """{destination: reply} for each (source or None, destination, port), asked at once.

    ``kind`` is "tcp" (connect, read to EOF) or "udp" (a connected socket, as nc -u and most
    client libraries use: the kernel gives it only datagrams from the address it sent to).
    A destination with no answer maps to "error: ...".
    """
    import json

    proc = subprocess.run(
        [*enter, PYTHON, "-c", ASK_ALL, kind, json.dumps(queries)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    answers: dict[str, str] = json.loads(proc.stdout)
    return answers
