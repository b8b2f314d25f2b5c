# SPDX-License-Identifier: MIT
"""Issue 13, item 4: what the service says and what it leaves behind, on real processes.

--log-connections lines (IPv4-mapped IPv6 shown as IPv4), journal entries with
REMOTE_ADDR/REMOTE_PORT when stderr is the journal (JOURNAL_STREAM), --log-level
filtering, --backlog reaching listen(2), LISTEN_* gone from the environment once read, and
one clear line when python3-systemd or python3-sdnotify is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import daytime_sd

from .support import (
    CTIME,
    PYTHON,
    REPO,
    Service,
    base_env,
    free_port,
    needs_root,
    query,
    read_to_eof,
    service,
)  # fmt: skip
from .test_udp import udp_socket

# bash, not sh: dash cannot name a descriptor above 9 in a redirection.
AS_SYSTEMD = 'exec 3<&{fd}; export LISTEN_PID=$$ LISTEN_FDS=1; exec "$@"'


def handed(fd: int) -> list[str]:
    """A wrapper that hands ``fd`` to the service as systemd does (fd 3, LISTEN_PID its pid)."""
    return ["bash", "-c", AS_SYSTEMD.format(fd=fd), "bash"]


def wait_for_text(svc: Service, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in svc.stderr:
        assert time.monotonic() < deadline, f"no {text!r} in {svc.stderr!r}"
        time.sleep(0.02)


def ask(port: int, host: str = "127.0.0.1") -> int:
    """Query; return the client's own port (what the log line must name)."""
    with socket.create_connection((host, port), timeout=10) as sock:
        assert CTIME.match(read_to_eof(sock))
        client_port: int = sock.getsockname()[1]
        return client_port


# -- --log-connections ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["in-process", "fork", "accept"])
def test_log_connections_names_each_client(mode: str) -> None:
    port = free_port()
    loopback = f"127.0.0.1:{port}"
    if mode == "fork":
        ctx = service(["--listen", "127.0.0.1", "--port", str(port), "--log-connections"])
    else:
        activate = ["-l", loopback] if mode == "in-process" else ["--accept", "-l", loopback]
        ctx = service(["--log-connections"], activate=activate)
    with ctx as svc:
        clients = [ask(port) for _ in range(3)]
        for client in clients:
            wait_for_text(svc, f"daytime-sd: connection from 127.0.0.1:{client}\n")
        assert svc.stderr.count("connection from") == 3
    # and without the option, not a word per connection
    port = free_port()
    with service(["--listen", "127.0.0.1", "--port", str(port), "--no-fork"]) as svc:
        ask(port)
        time.sleep(0.3)
        assert "connection from" not in svc.stderr


@contextmanager
def dual_stack_listener() -> Iterator[socket.socket]:
    """An IPv6 socket that also takes IPv4 (IPV6_V6ONLY off), bound to loopback only."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::ffff:127.0.0.1", 0))
        sock.listen(16)
        yield sock


def test_log_connections_shows_ipv4_mapped_clients_as_ipv4() -> None:
    with dual_stack_listener() as listener:
        port = listener.getsockname()[1]
        fd = listener.fileno()
        # Accept=no: the loop accepts from the dual-stack listener.
        with service(["--log-connections"], inner=handed(fd), pass_fds=[fd]) as svc:
            client = ask(port)
            wait_for_text(svc, f"daytime-sd: connection from 127.0.0.1:{client}\n")
            assert "::ffff:" not in svc.stderr
        # Accept=yes: a connection accepted here is the service's fd 3.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client_sock:
            conn, peer = listener.accept()
            assert peer[0] == "::ffff:127.0.0.1"  # what the service sees
            with conn:
                proc = subprocess.run(
                    [*handed(conn.fileno()), PYTHON, "-m", "daytime_sd", "--log-connections"],
                    env=base_env(), cwd=REPO, pass_fds=[conn.fileno()], capture_output=True,
                    text=True, timeout=20, stdin=subprocess.DEVNULL,
                )  # fmt: skip
            assert proc.returncode == 0, proc
            assert CTIME.match(read_to_eof(client_sock))
            client = client_sock.getsockname()[1]
            assert proc.stderr == f"daytime-sd: connection from 127.0.0.1:{client}\n"


# -- the journal ------------------------------------------------------------------------------


class FakeJournal:
    """A real AF_UNIX datagram socket where journald's would be, read as journald does
    (the native protocol: KEY=VALUE lines, or KEY, newline, 64-bit length, value)."""

    def __init__(self) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="dsd-journal-")
        os.chmod(self.dir.name, 0o755)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(os.path.join(self.dir.name, "socket"))
        os.chmod(os.path.join(self.dir.name, "socket"), 0o666)

    def entries(self, timeout: float) -> list[dict[str, str]]:
        got: list[dict[str, str]] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                break
            got.append(self.parse(data))
        return got

    @staticmethod
    def parse(data: bytes) -> dict[str, str]:
        fields: dict[str, str] = {}
        while data:
            line, _, rest = data.partition(b"\n")
            if b"=" in line:
                key, _, value = line.partition(b"=")
                data = rest
            else:  # binary-safe form
                key, size = line, int.from_bytes(rest[:8], "little")
                value, data = rest[8 : 8 + size], rest[8 + size + 1 :]
            fields[key.decode()] = value.decode()
        return fields

    def close(self) -> None:
        self.sock.close()
        self.dir.cleanup()


# In a mount namespace of its own, /run is a fresh tmpfs with the fake journal socket at
# journald's path, and JOURNAL_STREAM names the service's real stderr (a pipe), as systemd
# sets it for StandardError=journal.
IN_JOURNAL_NAMESPACE = [
    "unshare", "--mount", "sh", "-c",
    "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal"
    ' && mount --bind "$0" /run/systemd/journal'
    ' && export JOURNAL_STREAM="$(stat -L -c %d:%i /proc/self/fd/2)" && exec "$@"',
]  # fmt: skip


@needs_root("a private mount namespace for journald's socket path needs root")
def test_with_journal_stream_set_messages_go_to_the_journal_with_fields() -> None:
    journal = FakeJournal()
    port = free_port()
    argv = ["--listen", "127.0.0.1", "--port", str(port), "--log-connections"]
    try:
        with service(argv, wrap=[*IN_JOURNAL_NAMESPACE, journal.dir.name]) as svc:
            client = ask(port)
            entries = journal.entries(timeout=3.0)
            assert svc.proc.poll() is None
        messages = {e.get("MESSAGE", ""): e for e in entries}
        serving = messages[f"serving tcp 127.0.0.1:{port} (fork per connection); standalone"]
        assert serving["PRIORITY"] == "6"
        assert serving["SYSLOG_IDENTIFIER"] == "daytime-sd"
        connection = messages[f"connection from 127.0.0.1:{client}"]
        assert connection["REMOTE_ADDR"] == "127.0.0.1"
        assert connection["REMOTE_PORT"] == str(client)
        assert connection["PRIORITY"] == "6"
        # Issue 11 defect 11: the code that logged, not log.py, and given, not looked up.
        for entry in entries:
            assert "/daytime_sd/" in entry["CODE_FILE"], entry
            assert not entry["CODE_FILE"].endswith("/log.py"), entry
            assert entry["CODE_LINE"].isdigit() and entry["CODE_FUNC"], entry
        assert connection["CODE_FILE"].endswith("/accepting.py"), connection
        # Nothing went to stderr: the journal had every message.
        assert svc.stderr == "", svc.stderr
    finally:
        journal.close()


# -- --log-level ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "warning_shown", "info_shown"),
    [("info", True, True), ("warning", True, False), ("error", False, False)],
)
def test_log_level_filters(level: str, warning_shown: bool, info_shown: bool) -> None:
    port = free_port()
    # --port given to an activated service: a warning; "serving ..." is info.
    argv = ["--port", "1", "--log-level", level]
    with service(argv, activate=["-l", f"127.0.0.1:{port}"]) as svc:
        assert CTIME.match(query("127.0.0.1", port))
        svc.ready()
    assert ("--port ignored" in svc.stderr) == warning_shown, svc.stderr
    assert ("serving tcp" in svc.stderr) == info_shown, svc.stderr
    assert ("stopping: SIGTERM" in svc.stderr) == info_shown, svc.stderr


@needs_root("binding a source port below 1024 needs root")
@pytest.mark.parametrize("level", ["debug", "info"])
def test_debug_messages_only_at_debug(level: str) -> None:
    port = free_port()
    argv = ["--listen", "127.0.0.1", "--port", str(port), "--udp", "--log-level", level]
    with service(argv) as svc, udp_socket("127.0.0.1", 1000) as sock:
        sock.sendto(b"", ("127.0.0.1", port))
        with udp_socket() as other:  # then an answered one: the first was handled by then
            other.sendto(b"", ("127.0.0.1", port))
            other.settimeout(10)
            assert CTIME.match(other.recv(100))
    shown = "ignoring datagram from privileged port 127.0.0.1:1000" in svc.stderr
    assert shown == (level == "debug"), svc.stderr


# -- --backlog --------------------------------------------------------------------------------


def listen_backlog(port: int) -> int:
    """The backlog the kernel holds for the listener on ``port`` (ss: Send-Q of LISTEN)."""
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    rows = [row.split() for row in out.splitlines() if row.strip()]
    assert len(rows) == 1, out
    return int(rows[0][2])


def test_backlog_reaches_listen() -> None:
    port = free_port()
    with service(["--listen", "127.0.0.1", "--port", str(port), "--backlog", "7"]):
        assert listen_backlog(port) == 7
    with open("/proc/sys/net/core/somaxconn") as f:
        somaxconn = int(f.read())
    port = free_port()
    with service(["--listen", "127.0.0.1", "--port", str(port)]):
        assert listen_backlog(port) == min(socket.SOMAXCONN, somaxconn)


# -- LISTEN_* ---------------------------------------------------------------------------------

ENV_AFTER_DETECT = """
import os, subprocess
from daytime_sd import activation
sockets = activation.detect(os.environ)
print("sockets:", None if sockets is None else len(sockets.listeners))
print("python:", sorted(k for k in os.environ if k.startswith("LISTEN_")))
# What a process we started would inherit: the C library's environment.
inherited = subprocess.run(["env"], capture_output=True, text=True, check=True).stdout
print("inherited:", sorted(line.split("=")[0] for line in inherited.splitlines()
                          if line.startswith("LISTEN_")))
"""


@pytest.mark.parametrize("addressed", [True, False])
def test_listen_variables_are_gone_from_the_environment(addressed: bool) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        fd = listener.fileno()
        pid = "$$" if addressed else "1"  # to us, or to another process (ignored)
        script = (
            f'exec 3<&{fd}; export LISTEN_PID={pid} LISTEN_FDS=1 LISTEN_FDNAMES=daytime; exec "$@"'
        )
        proc = subprocess.run(
            ["bash", "-c", script, "bash", PYTHON, "-c", ENV_AFTER_DETECT], env=base_env(),
            cwd=REPO, pass_fds=[fd], capture_output=True, text=True, timeout=20,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"sockets: {1 if addressed else None}",
        "python: []",
        "inherited: []",
    ]


# -- missing Debian packages --------------------------------------------------------------------


# Debian's python3 without site-packages (-S): python3-systemd and python3-sdnotify are
# really not importable, as on a system without those packages.  With NOTIFY_SOCKET sdnotify
# is needed, and its absence is reported at start, not at the first STATUS= a second later.
# (Sockets from systemd need no package: activation.py reads LISTEN_FDS itself.)
@pytest.mark.parametrize(
    ("script", "env", "provided", "package"),
    [
        ('exec "$@"', {"NOTIFY_SOCKET": "/nonexistent/notify"}, (), "python3-sdnotify"),
        ('exec "$@"', {"NOTIFY_SOCKET": "/nonexistent/notify"}, ("systemd",), "python3-sdnotify"),
    ],
)
def test_a_missing_package_is_one_clear_line(
    script: str, env: dict[str, str], provided: tuple[str, ...], package: str, tmp_path: Path
) -> None:
    # daytime_sd (a copy of the package under test, wherever it is: the source tree, or
    # dist-packages beside python3-systemd in the autopkgtest) and ``provided`` alone on the path.
    shutil.copytree(Path(daytime_sd.__file__).parent, tmp_path / "daytime_sd")
    for name in provided:
        (tmp_path / name).symlink_to(f"/usr/lib/python3/dist-packages/{name}")
    env = {**env, "PYTHONPATH": str(tmp_path)}
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        fd = listener.fileno()
        proc = subprocess.run(
            ["bash", "-c", script.format(fd=fd), "bash", "/usr/bin/python3", "-S", "-m",
             "daytime_sd", "--listen", "127.0.0.1", "--port", str(free_port())],
            env=base_env(**env), cwd="/", pass_fds=[fd], capture_output=True, text=True,
            timeout=20, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("daytime-sd: error: "), proc.stderr
    assert package in lines[0], lines
