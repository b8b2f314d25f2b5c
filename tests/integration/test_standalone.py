# SPDX-License-Identifier: MIT
"""Standalone mode: getaddrinfo, one socket per address, fork per connection, clear errors."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .support import CTIME, PYTHON, REPO, base_env, children, free_port, needs_root, query, service


def run_cli(
    *args: str, user: str | None = None, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    argv = [PYTHON, "-m", "daytime_sd", *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", *argv]
    return subprocess.run(
        argv, env=base_env(), cwd=REPO, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def assert_one_line_error(proc: subprocess.CompletedProcess[str], status: int, *words: str) -> None:
    assert proc.returncode == status, proc
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("daytime-sd: error: ")
    for word in words:
        assert word in lines[0]
    assert proc.stdout == ""


def tcp_listeners(pid: int) -> list[tuple[int, int]]:
    """(family, type) of every listening socket the process holds, read from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found: list[tuple[int, int]] = []
    for family, table in ((socket.AF_INET, "tcp"), (socket.AF_INET6, "tcp6")):
        with open(f"/proc/{pid}/net/{table}") as f:
            for row in f.read().splitlines()[1:]:
                cols = row.split()
                if cols[3] == "0A" and cols[9] in inodes:  # 0A: TCP_LISTEN
                    found.append((family, socket.SOCK_STREAM))
    return found


def test_wildcard_serves_ipv4_and_ipv6_at_once() -> None:
    port = free_port()
    with service(["--port", str(port)]) as svc:
        assert sorted(tcp_listeners(svc.pid)) == [
            (socket.AF_INET, socket.SOCK_STREAM),
            (socket.AF_INET6, socket.SOCK_STREAM),
        ]
        assert CTIME.match(query("127.0.0.1", port))
        assert CTIME.match(query("::1", port))
        assert "serving tcp 0.0.0.0:" in svc.stderr and f"tcp [::]:{port}" in svc.stderr


DEBIAN_HOSTS = "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"


@needs_root("needs root for a private mount namespace")
def test_localhost_gives_one_socket_per_family(tmp_path: Path) -> None:
    # Debian's stock /etc/hosts names localhost for both families; some VM images drop the
    # ::1 line, so the service runs in a mount namespace of its own with the stock file.
    hosts = tmp_path / "hosts"
    hosts.write_text(DEBIAN_HOSTS)
    port = free_port()
    wrap = [
        "unshare",
        "--mount",
        "sh",
        "-c",
        'mount --bind "$0" /etc/hosts && exec "$@"',
        str(hosts),
    ]
    with service(["--listen", "localhost", "--port", str(port)], wrap=wrap) as svc:
        assert sorted(tcp_listeners(svc.pid)) == [
            (socket.AF_INET, socket.SOCK_STREAM),
            (socket.AF_INET6, socket.SOCK_STREAM),
        ]
        assert CTIME.match(query("127.0.0.1", port))
        assert CTIME.match(query("::1", port))


def test_ipv4_only_listen_is_not_reachable_on_ipv6() -> None:
    port = free_port()
    with service(["--listen", "127.0.0.1", "--port", str(port)]):
        assert CTIME.match(query("127.0.0.1", port))
        with pytest.raises(ConnectionRefusedError):
            query("::1", port)


def test_port_in_use_is_one_clear_line() -> None:
    port = free_port()
    with service(["--listen", "127.0.0.1", "--port", str(port)]):
        proc = run_cli("--listen", "127.0.0.1", "--port", str(port))
    assert_one_line_error(proc, 1, f"127.0.0.1:{port}", "address already in use", "--port")


def service_name_port() -> tuple[str, int]:
    """A TCP service name from /etc/services with a port of 1024 or more that is free now."""
    with open("/etc/services") as f:
        for row in f:
            cols = row.split("#", 1)[0].split()
            if len(cols) >= 2 and cols[1].endswith("/tcp"):
                number = int(cols[1].split("/")[0])
                if number >= 1024:
                    try:
                        with socket.socket() as probe:
                            probe.bind(("127.0.0.1", number))
                    except OSError:
                        continue
                    return cols[0], number
    pytest.fail("no usable service name in /etc/services")


def test_service_name_port() -> None:
    name, number = service_name_port()
    with service(["--listen", "127.0.0.1", "--port", name]):
        assert CTIME.match(query("127.0.0.1", number))


def test_unknown_service_name() -> None:
    proc = run_cli("--listen", "127.0.0.1", "--port", "no-such-service-xyz")
    assert_one_line_error(proc, 1, "unknown service", "port number")


def test_host_that_does_not_resolve() -> None:
    proc = run_cli("--listen", "no-such-host.invalid", "--port", str(free_port()))
    assert_one_line_error(proc, 1, "cannot resolve no-such-host.invalid")


def test_bad_flag_exits_2() -> None:
    assert_one_line_error(run_cli("--frobnicate"), 2, "unknown option --frobnicate", "--help")
    assert_one_line_error(run_cli("--port", "x y"), 2, "--port")


@needs_root("needs root to switch to an unprivileged user")
def test_privileged_port_without_rights() -> None:
    proc = run_cli("--listen", "127.0.0.1", "--port", "13", user="nobody")
    assert_one_line_error(proc, 1, "permission denied", "root", "daytime.socket", "--port")


def test_fork_mode_answers_in_children_and_reaps_them() -> None:
    port = free_port()
    with service(["--listen", "127.0.0.1", "--port", str(port), "--fork"]) as svc:
        for _ in range(50):
            assert CTIME.match(query("127.0.0.1", port))
        assert "fork per connection" in svc.stderr
        # children exit after answering and are reaped: none left as zombies
        deadline = time.monotonic() + 5
        while children(svc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert children(svc.pid) == []


@needs_root("needs root to drop privileges")
def test_user_drops_to_the_user_and_its_groups_only() -> None:
    port = free_port()
    nobody = pwd.getpwnam("nobody")
    with service(["--listen", "127.0.0.1", "--port", str(port), "--user", "nobody"]) as svc:
        assert CTIME.match(query("127.0.0.1", port))
        with open(f"/proc/{svc.pid}/status") as f:
            status = dict(line.split(":", 1) for line in f.read().splitlines())
        assert status["Uid"].split() == [str(nobody.pw_uid)] * 4
        assert status["Gid"].split() == [str(nobody.pw_gid)] * 4
        assert status["Groups"].split() == [
            str(g) for g in os.getgrouplist("nobody", nobody.pw_gid)
        ]
        assert "0" not in status["Groups"].split()
        assert status["CapEff"].strip() == "0000000000000000"


@needs_root("needs root to try a privilege drop")
def test_user_that_does_not_exist_refuses_to_serve() -> None:
    proc = run_cli(
        "--listen", "127.0.0.1", "--port", str(free_port()), "--user", "no-such-user-xyz"
    )
    assert_one_line_error(proc, 1, "--user no-such-user-xyz", "no such user")


def test_user_without_root_refuses_to_serve() -> None:
    if os.geteuid() == 0:
        proc = run_cli("--listen", "127.0.0.1", "--port", str(free_port()), "--user", "root",
                       user="nobody")  # fmt: skip
    else:
        proc = run_cli("--listen", "127.0.0.1", "--port", str(free_port()), "--user", "root")
    assert_one_line_error(proc, 1, "only root can change user")
