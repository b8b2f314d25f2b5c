"""How we were started: sockets from systemd, a socket on stdin from inetd, or none.

The order follows sd_listen_fds(3) and daemon(7): ``LISTEN_FDS`` addressed to this pid
first, then fd 0 if it is a socket, else standalone (the caller opens its own listeners).
Sockets are wrapped with ``_socket`` (the C module) rather than ``socket``: the
per-connection path answers one client and exits, and ``socket`` costs 5 ms to import.
"""

from __future__ import annotations

import _socket
import os
import stat

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing is slow to import, mypy honours both
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

    Returns False when the variables are addressed to another process (ignored, as
    sd_listen_fds(3) does); raises when they are addressed to us but malformed.
    """
    pid_text = env.get("LISTEN_PID", "")
    fds_text = env.get("LISTEN_FDS", "")
    if not pid_text.isdigit() or not pid_text.isascii():
        raise ActivationError(f"LISTEN_PID={pid_text!r} is not a process id")
    if int(pid_text) != os.getpid():
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
    """The sockets systemd passed to this process, or None if there are none for us."""
    if "LISTEN_PID" not in env and "LISTEN_FDS" not in env:
        return None
    if not _check_systemd_env(env):
        _unset(env)  # meant for another process: do not pass it on to ours either
        return None
    from systemd import daemon

    try:
        fds = daemon.listen_fds_with_names(unset_environment=True)
    except OSError as err:
        raise ActivationError(f"sockets from systemd are unusable: {err.strerror}") from None
    _unset(env)  # python-systemd unsets os.environ's C copy; keep the mapping in step
    if not fds:
        raise ActivationError("LISTEN_FDS is set but systemd's sockets are not usable")
    # Names (FileDescriptorName=) are not needed: every socket is served by what it is.
    sockets = Sockets("systemd")
    for fd in sorted(fds):
        sockets.add(fd)
    return sockets


def from_inetd() -> Sockets | None:
    """fd 0 as inetd, xinetd or ``StandardInput=socket`` hands it over, if it is a socket."""
    try:
        if not stat.S_ISSOCK(os.fstat(0).st_mode):
            return None
    except OSError:
        return None
    sockets = Sockets("inetd")
    sockets.add(0)
    return sockets


def guard_stdio() -> None:
    """Point stdout and stderr at /dev/null where they are a network connection.

    inetd hands the client over as fds 0, 1 and 2, and ``StandardInput=socket`` makes
    stdout the client too: nothing written there by accident (a usage error, a warning, a
    traceback) may reach a client as part of its answer.  Unix sockets (the journal, a
    supervisor's log pipe) are left alone.
    """
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
                os.dup2(null, fd)
    finally:
        if null >= 0:
            os.close(null)


def detect(env: MutableMapping[str, str] | None = None) -> Sockets | None:
    """Sockets we were given, or None when we must listen ourselves."""
    if env is None:
        env = os.environ
    return from_systemd(env) or from_inetd()
