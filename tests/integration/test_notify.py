# SPDX-License-Identifier: MIT
"""READY=1 always arrives, whatever the socket paths in STATUS=; failures are logged once;
every message, READY=1 included, goes through sdnotify (one mechanism: issue 22).

The notify socket is real (support.Notifications); systemd-socket-activate hands the service
AF_UNIX listeners whose paths end up in STATUS=.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import daytime_sd

from .support import CTIME, PYTHON, Notifications, Service, base_env, free_port, query, service

# Every field the service may send (sd_notify(3)); anything else was smuggled in by a text.
FIELDS = {"READY", "STATUS", "WATCHDOG", "STOPPING"}
PIPE_BUF = 4096  # the manager ignores a notification datagram this long or longer


@contextlib.contextmanager
def short_dir() -> Iterator[str]:
    """A directory with a short path: sun_path holds 108 bytes."""
    with tempfile.TemporaryDirectory(prefix="dsd-") as path:
        yield path


def ask_unix(path: str) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        chunks = []
        while data := sock.recv(4096):
            chunks.append(data)
        return b"".join(chunks)


def fields(message: str) -> list[str]:
    return [line.partition("=")[0] for line in message.split("\n") if line]


@pytest.mark.parametrize("name", ["время.sock", "a\nMAINPID=1.sock", "tab\tand\rcr.sock"])
def test_ready_and_a_decodable_status_arrive_whatever_the_socket_path(name: str) -> None:
    with short_dir() as tmp:
        path = os.path.join(tmp, name)
        with service([], activate=["-l", path]) as svc:
            assert CTIME.match(ask_unix(path))  # the first connection starts the service
            ready = svc.notify.wait_for("READY=1")
            assert fields(ready) == ["READY", "STATUS"], ready
            status = ready.split("\n")[1].removeprefix("STATUS=")
            assert status.isascii() and status.isprintable(), status
            assert path in codecs.decode(status, "unicode_escape"), status  # nothing lost
            # and the later STATUS= updates are as safe
            assert CTIME.match(ask_unix(path))
            deadline = time.monotonic() + 15
            while not any(m.startswith("STATUS=") for m in svc.notify.poll(0.2)):
                assert time.monotonic() < deadline, svc.notify.messages
            for message in svc.notify.messages:
                assert set(fields(message)) <= FIELDS, message
            assert "sd_notify" not in svc.stderr, svc.stderr


def test_ready_fits_in_a_datagram_the_manager_accepts_with_a_long_status() -> None:
    # 40 listeners with paths near the sun_path limit: a STATUS= of them all is over 4 KiB.
    with short_dir() as tmp:
        paths = [os.path.join(tmp, f"{i:02d}".ljust(100 - len(tmp), "x")) for i in range(40)]
        activate = [arg for path in paths for arg in ("-l", path)]
        with service([], activate=activate) as svc:
            assert CTIME.match(ask_unix(paths[0]))
            ready = svc.notify.wait_for("READY=1")
            assert len(ready.encode()) < PIPE_BUF, len(ready.encode())
            assert fields(ready) == ["READY", "STATUS"], ready
            assert paths[0] in ready  # the beginning of the text is kept
            assert "sd_notify" not in svc.stderr, svc.stderr


# The Notifier under python3 -S, as the launcher runs it (python3-systemd and python3-sdnotify
# from dist-packages, the package under test from wherever it is): which way to systemd each
# message took, sdnotify or python-systemd's sd_notify binding.
NOTIFIER = """
import sys
sys.path.append("/usr/lib/python3/dist-packages")
from daytime_sd.notify import Notifier
notifier = Notifier()
def loaded(when):
    print(when, *sorted({"sdnotify", "systemd", "systemd._daemon"} & set(sys.modules)))
loaded("start:")
notifier.ready("Serving tcp 127.0.0.1:13 (in-process)")
loaded("READY:")
notifier.status("Serving tcp 127.0.0.1:13 (in-process); 1 TCP connection", force=True)
notifier.watchdog()
notifier.stopping("Stopping (SIGTERM)")
notifier.close()
loaded("stop:")
"""
PACKAGE_DIR = str(Path(daytime_sd.__file__).resolve().parents[1])  # the tree, or dist-packages


def run_script(script: str, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``script`` under python3 -S with a real notify socket; the datagrams it sent."""
    with short_dir() as tmp, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as ns:
        path = os.path.join(tmp, "notify")
        ns.bind(path)
        env = base_env(NOTIFY_SOCKET=path, PYTHONPATH=PACKAGE_DIR, **env)
        proc = subprocess.run([PYTHON, "-S", "-c", script], env=env, capture_output=True,
                              text=True, timeout=30, cwd="/")  # fmt: skip
        assert proc.returncode == 0, proc
        ns.setblocking(False)
        sent = []
        with contextlib.suppress(BlockingIOError):
            while True:
                sent.append(ns.recv(65536).decode())
    return proc, sent


def run_notifier(**env: str) -> tuple[list[str], list[str]]:
    """NOTIFIER's report, and the datagrams it sent."""
    proc, sent = run_script(NOTIFIER, **env)
    assert not proc.stderr, proc
    return proc.stdout.splitlines(), sent


def test_every_message_goes_through_sdnotify() -> None:
    report, sent = run_notifier()
    assert report == ["start:", "READY: sdnotify", "stop: sdnotify"], report
    assert sent == [
        "READY=1\nSTATUS=Serving tcp 127.0.0.1:13 (in-process)",
        "STATUS=Serving tcp 127.0.0.1:13 (in-process); 1 TCP connection",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=Stopping (SIGTERM)",
    ], sent


def test_ready_carries_the_first_watchdog_ping_when_the_watchdog_is_on() -> None:
    _report, sent = run_notifier(WATCHDOG_USEC="30000000")
    assert sent[0] == "READY=1\nWATCHDOG=1\nSTATUS=Serving tcp 127.0.0.1:13 (in-process)", sent


# sdnotify's connect needs a descriptor: with none left (the soft limit at the lowest free one)
# READY's try fails and is logged; READY=1 then goes out ahead of the next message.
SHORTAGE = """
import os, resource, sys
sys.path.append("/usr/lib/python3/dist-packages")
from daytime_sd.notify import Notifier
notifier = Notifier()
import sdnotify, socket  # what the service has loaded by then
limits = resource.getrlimit(resource.RLIMIT_NOFILE)
free = os.dup(0)
os.close(free)
resource.setrlimit(resource.RLIMIT_NOFILE, (free, limits[1]))
notifier.ready("Serving")
resource.setrlimit(resource.RLIMIT_NOFILE, limits)
notifier.status("Serving; 1 TCP connection", force=True)
notifier.watchdog()
"""


def test_a_descriptor_shortage_at_connect_is_logged_once_and_the_next_message_gets_out() -> None:
    proc, sent = run_script(SHORTAGE)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("daytime-sd: sd_notify READY to "), lines
    assert "Too many open files" in lines[0], lines
    assert sent == ["READY=1\nSTATUS=Serving", "STATUS=Serving; 1 TCP connection", "WATCHDOG=1"]


def notify_lines(svc: Service) -> list[str]:
    return [line for line in svc.stderr.splitlines() if "sd_notify" in line]


def wait_for_notify_line(svc: Service, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not notify_lines(svc):
        assert svc.proc.poll() is None, svc.stderr
        assert time.monotonic() < deadline, svc.stderr
        time.sleep(0.05)


def test_a_notify_socket_that_does_not_exist_is_one_line_and_serving_goes_on() -> None:
    port = free_port()
    unused = Notifications()  # Service wants one; the service is pointed elsewhere
    with short_dir() as tmp:
        missing = os.path.join(tmp, "no-such-notify")
        argv = [PYTHON, "-m", "daytime_sd", "--listen", "127.0.0.1", "--port", str(port)]
        svc = Service(argv, base_env(NOTIFY_SOCKET=missing), unused)
        try:
            wait_for_notify_line(svc)
            for _ in range(3):
                assert CTIME.match(query("127.0.0.1", port))
            time.sleep(1.2)  # a STATUS= update is due now
            assert CTIME.match(query("127.0.0.1", port))
        finally:
            svc.stop()
            unused.close()
    assert svc.proc.returncode == 0, svc.stderr
    lines = notify_lines(svc)
    assert len(lines) == 1, svc.stderr
    assert lines[0].startswith("daytime-sd: sd_notify READY to ") and missing in lines[0], lines


def test_a_notify_socket_that_goes_away_is_logged_once_for_many_failures() -> None:
    port = free_port()
    with service(["--listen", "127.0.0.1", "--port", str(port), "--no-fork"]) as svc:
        svc.ready()
        svc.notify.sock.close()  # the manager is gone: every later send is refused
        for round_ in range(3):  # three STATUS= updates due, then STOPPING=1
            assert CTIME.match(query("127.0.0.1", port))
            if round_ == 0:
                wait_for_notify_line(svc)
            time.sleep(1.1)
        assert svc.proc.poll() is None
        svc.stop()
    assert svc.proc.returncode == 0, svc.stderr
    lines = notify_lines(svc)
    assert len(lines) == 1, svc.stderr
    # sdnotify connects in the first round after READY=1, which is most often before the
    # socket is closed here: then the first STATUS= is what fails.
    assert lines[0].startswith(
        ("daytime-sd: sd_notify STATUS to ", "daytime-sd: sd_notify connect to ")
    ), lines
