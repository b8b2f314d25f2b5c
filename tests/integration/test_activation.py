# SPDX-License-Identifier: MIT
"""Every activated mode through the real systemd-socket-activate, and bad LISTEN_* input."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import time

import pytest

from .support import CTIME, PYTHON, REPO, base_env, free_port, query, service


def udp_query(host: str, port: int, payload: bytes = b"?", timeout: float = 10.0) -> bytes:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(payload, (host, port))
        data, _ = sock.recvfrom(65536)
        return data


def test_listening_fd_is_served_in_process() -> None:
    port = free_port()
    with service([], activate=["-l", f"127.0.0.1:{port}"]) as svc:
        assert CTIME.match(query("127.0.0.1", port))  # starts it
        svc.ready()
        for _ in range(20):
            assert CTIME.match(query("127.0.0.1", port))
        assert "in-process" in svc.stderr
        assert svc.proc.poll() is None  # a long-running server, not one answer and exit


def test_accept_mode_connection_fd_answers_once_per_process() -> None:
    port = free_port()
    with service([], activate=["--accept", "-l", f"127.0.0.1:{port}"]) as svc:
        for _ in range(5):
            assert CTIME.match(query("127.0.0.1", port))
        time.sleep(0.2)
        assert svc.stderr.count("Spawned") >= 5  # one process per connection
        assert svc.stderr.count("died with code 0") >= 4


def test_inetd_mode_connection_on_stdin() -> None:
    port = free_port()
    with service([], activate=["--accept", "--inetd", "-l", f"127.0.0.1:{port}"]) as svc:
        for _ in range(3):
            assert CTIME.match(query("127.0.0.1", port))
        time.sleep(0.2)
        assert "died with code 0" in svc.stderr


# As inetd hands a client over: fds 0, 1 and 2 (systemd-socket-activate --inetd sets 0 and 1).
INETD_012 = ["sh", "-c", 'exec "$@" 2>&1', "sh"]


def test_inetd_mode_usage_error_never_reaches_the_client() -> None:
    port = free_port()
    activate = ["--accept", "--inetd", "-l", f"127.0.0.1:{port}"]
    with service(["--bogus"], activate=activate, inner=INETD_012) as svc:
        assert query("127.0.0.1", port) == b""
        deadline = time.monotonic() + 10
        while "died with code 2" not in svc.stderr:  # it did run, and failed on --bogus
            assert time.monotonic() < deadline, svc.stderr
            time.sleep(0.05)
        assert "unknown option" not in svc.stderr  # stderr was the client: now /dev/null


def test_datagram_socket() -> None:
    port = free_port()
    with service(["--udp-rate", "100"], activate=["--datagram", "-l", f"127.0.0.1:{port}"]):
        assert CTIME.match(udp_query("127.0.0.1", port))
        assert CTIME.match(udp_query("127.0.0.1", port, b""))
        assert CTIME.match(udp_query("127.0.0.1", port, b"x" * 65000))


def test_several_sockets_ipv4_and_ipv6_in_one_loop() -> None:
    port, other = free_port(), free_port()
    activate = ["-l", f"127.0.0.1:{port}", "-l", f"[::1]:{port}", "-l", f"127.0.0.1:{other}"]
    with service([], activate=activate) as svc:
        assert CTIME.match(query("127.0.0.1", port))
        svc.ready()
        assert CTIME.match(query("::1", port))
        assert CTIME.match(query("127.0.0.1", other))
        # One process serves all three: systemd-socket-activate said once that it runs the
        # command ("Execing" up to systemd 25x, "Executing:" in 262).
        assert len(re.findall(r"^Exec(?:ing|uting:) ", svc.stderr, re.M)) == 1, svc.stderr


def test_fdnames_are_accepted() -> None:
    port, other = free_port(), free_port()
    activate = ["-l", f"127.0.0.1:{port}", "-l", f"[::1]:{other}", "--fdname=v4:v6"]
    with service([], activate=activate):
        assert CTIME.match(query("127.0.0.1", port))
        assert CTIME.match(query("::1", other))


def test_fork_can_be_chosen_when_activated() -> None:
    port = free_port()
    with service(["--fork"], activate=["-l", f"127.0.0.1:{port}"]) as svc:
        assert CTIME.match(query("127.0.0.1", port))
        svc.ready()
        assert "fork per connection" in svc.stderr


def test_standalone_options_are_ignored_with_a_warning() -> None:
    port = free_port()
    with service(
        ["--port", "1", "--listen", "192.0.2.1"], activate=["-l", f"127.0.0.1:{port}"]
    ) as svc:
        assert CTIME.match(query("127.0.0.1", port))
        svc.ready()
        assert "--listen, --port ignored: the sockets come from systemd" in svc.stderr


def run_with_env(env_script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the service with LISTEN_* set by a shell that then execs it (same pid)."""
    script = f'{env_script} exec "$0" -m daytime_sd "$@"'
    return subprocess.run(
        ["sh", "-c", script, PYTHON, *args], env=base_env(), cwd=REPO, capture_output=True,
        text=True, timeout=20, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env_script", "message"),
    [
        ("export LISTEN_PID=$$ LISTEN_FDS=abc;", "LISTEN_FDS='abc' is not a number"),
        ("export LISTEN_PID=$$ LISTEN_FDS=-1;", "LISTEN_FDS='-1' is not a number"),
        ("export LISTEN_PID=$$ LISTEN_FDS=0;", "LISTEN_FDS=0"),
        ("export LISTEN_PID=$$ LISTEN_FDS=2;", "not open"),
        ("export LISTEN_PID=x LISTEN_FDS=1;", "LISTEN_PID='x' is not a process id"),
        ("export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=a:b;", "does not name 1"),
        ("export LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=a;", "does not name 2"),
        ("exec 3</dev/null; export LISTEN_PID=$$ LISTEN_FDS=1;", "descriptor 3 is not a socket"),
        ("export LISTEN_PID=$$ LISTEN_FDS=99999;", "more descriptors"),
        ("export LISTEN_PID=$$ LISTEN_FDS=4096;", "LISTEN_FDS=4096, but file descriptor 3 is"),
        ("export LISTEN_PID=$$ LISTEN_FDS=4097;", "more descriptors"),
        ("export LISTEN_PID=\u0661 LISTEN_FDS=1;", "is not a process id"),  # a non-ASCII digit
        (
            "exec 3</dev/null; export LISTEN_PID=$$ LISTEN_FDS=2;",
            "LISTEN_FDS=2, but file descriptor 4 is not open",
        ),
        # names are checked against the count before the descriptors are
        (
            "export LISTEN_PID=$$ LISTEN_FDS=300 LISTEN_FDNAMES=$(printf 'x%.0s:' $(seq 299))x;",
            "LISTEN_FDS=300, but file descriptor 3 is not open",
        ),
    ],
)
def test_malformed_listen_env_is_a_clear_error(env_script: str, message: str) -> None:
    # --port 1 would be refused or clash if the service fell back to listening itself.
    proc = run_with_env(env_script, "--listen", "127.0.0.1", "--port", "1")
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("daytime-sd: error: "), proc.stderr
    assert message in lines[0]


def test_connected_stream_on_fd3_gets_one_line_and_the_process_exits() -> None:
    left, right = socket.socketpair()
    try:
        script = (
            f'exec 3<&{right.fileno()}; export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" -m daytime_sd'
        )
        proc = subprocess.run(
            ["bash", "-c", script, PYTHON], env=base_env(), cwd=REPO, pass_fds=(right.fileno(),),
            stdin=subprocess.DEVNULL, capture_output=True, timeout=20,
        )  # fmt: skip
        right.close()
        assert proc.returncode == 0, proc.stderr
        left.settimeout(5)
        assert CTIME.match(left.recv(100))
        assert left.recv(100) == b""
    finally:
        left.close()


# sd_listen_fds(3): LISTEN_* for another process (pids lower and higher than any of ours:
# pid_max is at most 4194304), a LISTEN_FDS without LISTEN_PID, or our LISTEN_PID without
# LISTEN_FDS all mean "not activated": the service listens itself.
@pytest.mark.parametrize(
    "env_script",
    [
        "export LISTEN_PID=1 LISTEN_FDS=1;",
        "export LISTEN_PID=4194305 LISTEN_FDS=1;",
        "export LISTEN_FDS=1;",
        "export LISTEN_FDS=1 LISTEN_FDNAMES=x;",
        "export LISTEN_PID=$$;",
    ],
)
def test_listen_variables_not_for_us_are_ignored(env_script: str) -> None:
    port = free_port()
    script = f'{env_script} exec "$0" -m daytime_sd "$@"'
    proc = subprocess.Popen(
        ["sh", "-c", script, PYTHON, "--listen", "127.0.0.1", "--port", str(port)],
        env=base_env(), cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                assert CTIME.match(query("127.0.0.1", port))
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "serving tcp 127.0.0.1" in err


def socket_on_fd3(sock: socket.socket, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the service with ``sock`` as its fd 3 and LISTEN_PID/LISTEN_FDS for it."""
    fd = sock.fileno()
    script = f'exec 3<&{fd}; export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" -m daytime_sd "$@"'
    return subprocess.run(
        ["bash", "-c", script, PYTHON, *args], env=base_env(), cwd=REPO, pass_fds=(fd,),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("unbound-tcp", "file descriptor 3 is a stream socket neither listening nor connected"),
        ("seqpacket", "file descriptor 3 is a socket of a type daytime cannot serve"),
    ],
)
def test_a_socket_it_cannot_serve_is_a_clear_error(kind: str, message: str) -> None:
    if kind == "seqpacket":
        left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock = left
    else:
        sock, right = socket.socket(), None
    try:
        proc = socket_on_fd3(sock)
    finally:
        sock.close()
        if right is not None:
            right.close()
    assert proc.returncode == 1, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("daytime-sd: error: "), proc.stderr
    assert message in lines[0]


def test_inetd_help_output_never_reaches_the_client() -> None:
    """stdout is the client too (fds 0 and 1): even --version goes nowhere."""
    port = free_port()
    with service(["--version"], activate=["--accept", "--inetd", "-l", f"127.0.0.1:{port}"]):
        assert query("127.0.0.1", port) == b""


@pytest.mark.parametrize("stdout", ["1>/dev/null", "1>&-"])  # not a socket, or closed
def test_inetd_usage_error_with_stdout_elsewhere_never_reaches_the_client(stdout: str) -> None:
    """Client on fds 0 and 2, stdout not a socket: stderr is still guarded."""
    port = free_port()
    inner = ["sh", "-c", f'exec "$@" 2>&1 {stdout}', "sh"]
    activate = ["--accept", "--inetd", "-l", f"127.0.0.1:{port}"]
    with service(["--bogus"], activate=activate, inner=inner) as svc:
        assert query("127.0.0.1", port) == b""
        deadline = time.monotonic() + 10
        while "died with code 2" not in svc.stderr:
            assert time.monotonic() < deadline, svc.stderr
            time.sleep(0.05)


def test_inetd_dgram_guard_leaves_no_descriptor_behind() -> None:
    """inetd ``dgram wait``: the UDP socket as fds 0, 1 and 2; 1 and 2 become /dev/null,
    and the /dev/null opened for that is closed again."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        proc = subprocess.Popen(
            [PYTHON, "-m", "daytime_sd"], env=base_env(), cwd=REPO,
            stdin=sock.fileno(), stdout=sock.fileno(), stderr=sock.fileno(),
        )  # fmt: skip
        try:
            assert CTIME.match(udp_query("127.0.0.1", port))  # serving: guarded by now
            targets = {}
            for fd in os.listdir(f"/proc/{proc.pid}/fd"):
                # An fd open only for a moment (a module file being imported) may be gone.
                with contextlib.suppress(FileNotFoundError):
                    targets[fd] = os.readlink(f"/proc/{proc.pid}/fd/{fd}")
            null = sorted(int(fd) for fd, target in targets.items() if target == os.devnull)
            assert null == [1, 2], targets
            assert targets["0"].startswith("socket:"), targets
        finally:
            proc.terminate()
            assert proc.wait(15) == 0


def test_closed_stdin_means_standalone() -> None:
    """No fd 0 at all (a daemon started with stdin closed): not inetd, it listens itself."""
    port = free_port()
    argv = ["--listen", "127.0.0.1", "--port", str(port)]
    with service(argv, inner=["sh", "-c", 'exec "$@" 0<&-', "sh"]) as svc:
        assert CTIME.match(query("127.0.0.1", port))
        assert "serving tcp 127.0.0.1" in svc.stderr
