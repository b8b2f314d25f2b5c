# SPDX-License-Identifier: MIT
"""How we were started: sockets from systemd, a socket on stdin from inetd, or none.

The order follows sd_listen_fds(3) and daemon(7): ``LISTEN_FDS`` addressed to this pid
first, then fd 0 if it is a socket, else standalone (the caller opens its own listeners).
Sockets are wrapped with ``_socket`` (the C module) rather than ``socket``: the
per-connection path answers one client and exits, and ``socket`` costs more to import than
the answer (bench/ output, "Import costs"; test_import_budget keeps it out).
"""

from __future__ import annotations

import _socket
import os
import stat

# The per-connection path: typing.TYPE_CHECKING would import typing (bench/ "Import costs").
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, MutableMapping

LISTEN_FDS_START = 3


class ActivationError(Exception):
    """The environment claims sockets that are not there or not usable: exit 1."""


class Sockets:
    """Sockets handed to us, sorted by what they need."""

    __slots__ = ("connections", "datagrams", "listeners", "source")

    def __init__(self, source: str) -> None:
        self.source = source  # "systemd" or "inetd"
        self.listeners: list[_socket.socket] = []
        self.connections: list[_socket.socket] = []
        self.datagrams: list[_socket.socket] = []

    def add(self, fd: int) -> None:
        sock = classify(fd)
        if sock.type == _socket.SOCK_DGRAM:
            self.datagrams.append(sock)
        elif sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ACCEPTCONN):
            self.listeners.append(sock)
        else:
            self.connections.append(sock)


def classify(fd: int) -> _socket.socket:
    """Wrap ``fd`` after checking it is a stream or datagram socket we can serve."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        raise ActivationError(f"file descriptor {fd} is not open") from None
    if not stat.S_ISSOCK(mode):
        raise ActivationError(f"file descriptor {fd} is not a socket")
    sock = _socket.socket(fileno=fd)
    if sock.type not in (_socket.SOCK_STREAM, _socket.SOCK_DGRAM):
        sock.detach()
        raise ActivationError(f"file descriptor {fd} is a socket of a type daytime cannot serve")
    if sock.type == _socket.SOCK_STREAM and not sock.getsockopt(
        _socket.SOL_SOCKET, _socket.SO_ACCEPTCONN
    ):
        try:
            sock.getpeername()
        except OSError:
            sock.detach()
            raise ActivationError(
                f"file descriptor {fd} is a stream socket neither listening nor connected"
            ) from None
    return sock


def _check_systemd_env(env: Mapping[str, str]) -> bool:
    """Validate LISTEN_PID/LISTEN_FDS ourselves, for messages that say what is wrong.

    Returns False when the variables are not for us; raises when they are addressed to us
    but malformed.  As sd_listen_fds(3) and libsystemd do, a missing ``LISTEN_PID``, one
    that names another process, or a missing ``LISTEN_FDS`` means "not activated": a
    variable inherited without its partner is a stale leftover, not a claim of sockets.
    A ``LISTEN_PID`` that is not a number at all is an error there and here.
    Deviation: libsystemd returns -EINVAL for ``LISTEN_FDS=0``, as we do, but we also
    refuse more than 4096 descriptors, a count no socket unit of ours produces.
    """
    pid_text = env.get("LISTEN_PID")
    fds_text = env.get("LISTEN_FDS")
    if pid_text is None:
        return False
    if not pid_text.isdigit() or not pid_text.isascii():
        raise ActivationError(f"LISTEN_PID={pid_text!r} is not a process id")
    if int(pid_text) != os.getpid() or fds_text is None:
        return False
    if not fds_text.isdigit() or not fds_text.isascii():
        raise ActivationError(f"LISTEN_FDS={fds_text!r} is not a number of file descriptors")
    count = int(fds_text)
    if count == 0:
        raise ActivationError("LISTEN_FDS=0: systemd passed no sockets; check the socket unit")
    if count > 4096:
        raise ActivationError(f"LISTEN_FDS={count} is more descriptors than daytime-sd serves")
    names = env.get("LISTEN_FDNAMES")
    if names is not None and len(names.split(":")) != count:
        raise ActivationError(f"LISTEN_FDNAMES={names!r} does not name {count} descriptors")
    for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + count):
        try:
            os.fstat(fd)
        except OSError:
            message = f"LISTEN_FDS={count}, but file descriptor {fd} is not open"
            raise ActivationError(message) from None
    return True


def _unset(env: MutableMapping[str, str]) -> None:
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(key, None)


def from_systemd(env: MutableMapping[str, str]) -> Sockets | None:
    """The sockets systemd passed to this process, or None if there are none for us.

    sd_listen_fds_with_names(3), done here as libsystemd does it, rather than through
    python-systemd: its ``systemd.daemon`` imports ``socket`` and ``enum``, a cost on every
    Accept=yes connection (bench/ output, "Import costs"), for the few lines below.  What
    libsystemd does and we do too: the variables are removed from the environment, so no
    child of ours takes them for its own, and each descriptor is made close-on-exec.  The
    names (FileDescriptorName=) are not needed: every socket is served by what it is.
    """
    if "LISTEN_PID" not in env and "LISTEN_FDS" not in env:
        return None
    ours = _check_systemd_env(env)
    count = int(env["LISTEN_FDS"]) if ours else 0
    _unset(env)
    if not ours:
        return None
    sockets = Sockets("systemd")
    for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + count):
        os.set_inheritable(fd, False)
        sockets.add(fd)
    return sockets


def from_inetd(standalone_asked: bool = False) -> Sockets | None:
    """fd 0 as inetd, xinetd or ``StandardInput=socket`` hands it over, if it is one.

    daemon(7) and inetd say only "a socket on fd 0".  We are stricter: an IPv4 or IPv6
    socket there is inetd's, but a unix socket is also what a supervisor or a parent's
    socketpair leaves on stdin (Node's child_process does), so it counts only when the
    command line does not ask for standalone listening.
    """
    try:
        if not stat.S_ISSOCK(os.fstat(0).st_mode):
            return None
        probe = _socket.socket(fileno=0)
        family = probe.family
        probe.detach()
    except OSError:
        return None
    if family not in (_socket.AF_INET, _socket.AF_INET6) and standalone_asked:
        return None
    sockets = Sockets("inetd")
    sockets.add(0)
    return sockets


def guard_stdio() -> None:
    """Make fds 0, 1 and 2 safe to use: open, and never a network connection.

    A closed standard fd (``daytime-sd 2>&-``) would be taken by the first socket we open,
    and a message meant for stderr would go to a client, or a forked child would keep a
    listener open; Python has also set ``sys.stderr`` to None then.  So a closed one is
    opened on /dev/null.  inetd hands the client over as fds 0, 1 and 2, and
    ``StandardInput=socket`` makes stdout the client too: nothing written there by accident
    (a usage error, a warning, a traceback) may reach a client as part of its answer, so
    stdout and stderr that are IPv4 or IPv6 sockets are pointed at /dev/null as well.  Unix
    sockets (the journal, a supervisor's log pipe) are left alone.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:  # closed: the lowest free number, so open() returns exactly fd
            opened = os.open(os.devnull, os.O_RDWR)
            if opened != fd:  # cannot happen (the lower ones are open by now); be sure
                os.dup2(opened, fd)
                os.close(opened)
            _rebind(fd)
    null = -1
    try:
        for fd in (1, 2):
            try:
                if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                    continue
                probe = _socket.socket(fileno=fd)
                family = probe.family
                probe.detach()
            except OSError:
                continue
            if family in (_socket.AF_INET, _socket.AF_INET6):
                if null < 0:
                    null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
                os.dup2(null, fd)  # dup2 clears close-on-exec: it stays what fd 1/2 was
    finally:
        if null >= 0:
            os.close(null)


def _rebind(fd: int) -> None:
    """Give Python a stream again for a standard fd that was closed at start."""
    import sys

    stream = open(fd, "r" if fd == 0 else "w", closefd=False)  # noqa: SIM115  # for good
    if fd == 0:
        sys.stdin = stream
    elif fd == 1:
        sys.stdout = stream
    else:
        sys.stderr = stream


def detect(
    env: MutableMapping[str, str] | None = None, standalone_asked: bool = False
) -> Sockets | None:
    """Sockets we were given, or None when we must listen ourselves."""
    if env is None:
        env = os.environ
    return from_systemd(env) or from_inetd(standalone_asked)
