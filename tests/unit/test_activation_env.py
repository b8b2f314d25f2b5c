# SPDX-License-Identifier: MIT
"""activation.detect() on an environment mapping it is given (no sockets are opened)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import daytime_sd
from daytime_sd.activation import ActivationError, detect


def stdin_is_a_socket() -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(0).st_mode)
    except OSError:
        return False


# sd_listen_fds(3): another process's LISTEN_PID, none at all (a LISTEN_FDS inherited on
# its own), or ours without LISTEN_FDS all mean "not activated", never an error.
@pytest.mark.parametrize(
    "listen",
    [
        {"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x"},
        {"LISTEN_FDS": "1"},
        {"LISTEN_FDS": "1", "LISTEN_FDNAMES": "x"},
        {"LISTEN_PID": str(os.getpid())},
    ],
)
def test_variables_not_for_us_are_removed_from_the_given_mapping(
    listen: dict[str, str],
) -> None:
    env = {**listen, "OTHER": "kept"}
    found = detect(env)
    assert env == {"OTHER": "kept"}  # this mapping, not os.environ
    if not stdin_is_a_socket():
        assert found is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LISTEN_PID": "x", "LISTEN_FDS": "1"}, "LISTEN_PID='x' is not a process id"),
        ({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "x"}, "LISTEN_FDS='x' is not a number"),
        ({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "0"}, "LISTEN_FDS=0"),
    ],
)
def test_malformed_variables_in_the_given_mapping(env: dict[str, str], message: str) -> None:
    with pytest.raises(ActivationError, match=message):
        detect(env)


def test_no_variables_at_all() -> None:
    env = {"OTHER": "x"}
    found = detect(env)
    assert env == {"OTHER": "x"}
    if not stdin_is_a_socket():
        assert found is None


def test_importing_it_loads_neither_collections_nor_typing(
    lean_import: Callable[[str], None],
) -> None:
    """Every connection of the per-connection path looks for its sockets."""
    lean_import("daytime_sd.activation")


# --- fd 0, 1 and 2, in a fresh interpreter of this tree -------------------------------------

ROOT = Path(__file__).resolve().parents[2]
# The package under test, found as conftest.PACKAGE_ENV finds it (the autopkgtest's copy of the
# tree has no daytime_sd/, and -S leaves dist-packages off sys.path).
PACKAGE_ENV = {**os.environ, "PYTHONPATH": str(Path(daytime_sd.__file__).resolve().parents[1])}
CHILD = """
import gc, json, os, stat, sys
report, closed, asked = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "asked"
for fd in (int(n) for n in closed.split(",") if n):
    os.close(fd)
from daytime_sd import activation
look = {"inetd": activation.from_inetd, "detect": lambda *a: activation.detect({}, *a)}
how = look.get(sys.argv[4])  # standalone asked or not, as the command line says; by default not
found = how and (how(True) if asked else how())
activation.guard_stdio()
null = os.stat(os.devnull).st_rdev
seen = {"found": found and [found.source, len(found.connections)]}
for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
    st, stream = os.fstat(fd), getattr(sys, name)
    kind = "null" if stat.S_ISCHR(st.st_mode) and st.st_rdev == null else stat.S_IFMT(st.st_mode)
    seen[name] = [kind, stream.fileno(), stream.mode]
sys.stdin = sys.stdout = sys.stderr = None  # the streams may go: the descriptors stay
gc.collect()
seen["open"] = [fd for fd in (0, 1, 2) if os.path.exists(f"/proc/self/fd/{fd}")]
os.write(report, json.dumps(seen).encode())
"""


def child(closed: str = "", asked: bool = False, look: str = "-", **fds: Any) -> Any:
    """Run CHILD with fds 0, 1, 2 as given (``stdin=``, ...) and ``closed`` closed first;
    ``look`` ("inetd", "detect") for sockets before guard_stdio() runs."""
    read, write = os.pipe()
    args = [str(write), closed, "asked" if asked else "-", look]
    with subprocess.Popen([sys.executable, "-S", "-c", CHILD, *args], cwd=ROOT,
                          env=PACKAGE_ENV, pass_fds=(write,), **fds) as proc:  # fmt: skip
        os.close(write)
        with os.fdopen(read, "rb") as f:
            seen = f.read()
    assert proc.returncode == 0, seen
    return json.loads(seen)


PIPE_KIND = stat.S_IFIFO


@pytest.mark.parametrize("closed", ["0", "1", "2", "0,1,2", "1,2"])
def test_closed_standard_fds_are_opened_on_dev_null(closed: str) -> None:
    seen = child(closed, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        kind = "null" if str(fd) in closed.split(",") else PIPE_KIND
        assert seen[name] == [kind, fd, mode], (name, seen)
    assert seen["open"] == [0, 1, 2]


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
    return client, accepted


@pytest.mark.parametrize("which", ["stdout", "stderr"])
def test_a_network_socket_on_stdout_or_stderr_is_pointed_at_dev_null(which: str) -> None:
    client, accepted = tcp_pair()
    ours, theirs = socket.socketpair()  # a unix socket (the journal's kind): left alone
    other = "stderr" if which == "stdout" else "stdout"
    with client, accepted, ours, theirs:
        streams: dict[str, Any] = {which: accepted.fileno(), other: ours.fileno()}
        seen = child(stdin=subprocess.DEVNULL, **streams)
    assert seen[which][0] == "null"
    assert seen[other][0] == stat.S_IFSOCK


def test_a_network_socket_on_stderr_with_stdout_a_pipe() -> None:
    client, accepted = tcp_pair()
    with client, accepted:
        seen = child(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=accepted.fileno())
    assert seen["stdout"][0] == PIPE_KIND and seen["stderr"][0] == "null"


@pytest.mark.parametrize("look", ["inetd", "detect"])
def test_a_unix_socket_on_stdin_is_inetd_unless_standalone_is_asked(look: str) -> None:
    for asked, found in ((False, ["inetd", 1]), (True, None)):
        ours, theirs = socket.socketpair()
        with ours, theirs:
            seen = child(asked=asked, look=look, stdin=ours.fileno(), stdout=subprocess.PIPE)
        assert seen["found"] == found, asked


def test_no_stdin_at_all_is_not_inetd() -> None:
    assert child("0", look="inetd", stdout=subprocess.PIPE)["found"] is None


def test_a_network_socket_on_stdin_is_inetd_even_when_standalone_is_asked() -> None:
    client, accepted = tcp_pair()
    with client, accepted:
        seen = child(asked=True, look="inetd", stdin=accepted.fileno(), stdout=subprocess.PIPE)
    assert seen["found"] == ["inetd", 1]


CLOEXEC_CHILD = """
import os, socket
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
if listener.fileno() != 3:
    os.dup2(listener.fileno(), 3)  # where systemd puts the first one
os.set_inheritable(3, True)  # as systemd leaves it
before = os.get_inheritable(3)
from daytime_sd import activation
env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1"}
found = activation.from_systemd(env)
print(before, os.get_inheritable(3), found is not None and found.source, env)
"""


def test_passed_descriptors_are_made_close_on_exec() -> None:
    """As sd_listen_fds(3) does: no program a child of ours might run inherits a listener."""
    proc = subprocess.run([sys.executable, "-S", "-c", CLOEXEC_CHILD], cwd=ROOT,
                          env=PACKAGE_ENV, capture_output=True, text=True, check=True)  # fmt: skip
    assert proc.stdout.split() == ["True", "False", "systemd", "{}"]
