# SPDX-License-Identifier: MIT
"""Standalone listeners: getaddrinfo, one socket per result, bind, listen.

The classic method (Stevens, UNP 11.6) with the details that make dual-stack work:
``IPV6_V6ONLY`` on IPv6 sockets so ``0.0.0.0`` and ``::`` can both be bound on one port,
and ``SO_REUSEADDR`` on TCP listeners so a restart does not wait out TIME_WAIT.

Which addresses (the rule man/daytime-sd.8 gives under --listen):

- An address given as a number (``127.0.0.1``, ``::1``, ``0.0.0.0``, ``fe80::1%eth0``) is
  taken as it is, and must be bound.  It is not passed through AI_ADDRCONFIG, which counts
  no loopback address: where a family lives on ``lo`` only (IPv6 in many containers, IPv4
  on an IPv6-only host) it would hide that family's addresses, ``::1`` and ``127.0.0.1``
  included, as if they did not exist.
- The default (no --listen) is ``0.0.0.0`` and ``::``, each tried.  A family the kernel
  does not have (socket() fails EAFNOSUPPORT: ipv6.disable=1) or will not bind the
  wildcard of (EADDRNOTAVAIL) is skipped with an info line; it is an error only when no
  family can be bound.
- A host name is resolved with AI_ADDRCONFIG, as a name is meant: its addresses of the
  families the host has configured beyond loopback, each of which must be bound.
"""

from __future__ import annotations

import errno
import os
import pwd
import socket
from collections.abc import Iterable, Sequence

from daytime_sd import log
from daytime_sd.netaddr import format_endpoint


class ListenError(Exception):
    """We cannot listen where asked: exit 1, with a message that says what to do."""


Sockaddr = tuple[object, ...]  # (host, port) or (host, port, flowinfo, scope_id)
Endpoint = tuple[int, int, int, Sockaddr]  # family, type, proto, sockaddr


def _host_bytes(host: str | None) -> bytes | None:
    """The name as getaddrinfo wants it, encoded here so an ASCII name needs no codec.

    Given a str, CPython's getaddrinfo encodes it with the "idna" codec, which imports
    stringprep, unicodedata and re: memory every forked child then pays to copy.  Non-ASCII
    names still go through IDNA (config checked they can).
    """
    if host is None:
        return None
    return host.encode("ascii") if host.isascii() else host.encode("idna")


def _getaddrinfo(
    host: str | None, port: str, socktype: int
) -> Sequence[tuple[int, int, int, str, Sockaddr]]:
    """A number (or None, the wildcards) as it is; otherwise a name, with AI_ADDRCONFIG."""
    name = _host_bytes(host)
    passive = socket.AI_PASSIVE
    try:
        return socket.getaddrinfo(
            name, port, socket.AF_UNSPEC, socktype, 0, passive | socket.AI_NUMERICHOST
        )
    except socket.gaierror as err:
        if host is None or err.errno != socket.EAI_NONAME:  # EAI_NONAME: not a number
            raise
    return socket.getaddrinfo(
        name, port, socket.AF_UNSPEC, socktype, 0, passive | socket.AI_ADDRCONFIG
    )


def resolve(hosts: Iterable[str | None], port: str, socktype: int) -> list[Endpoint]:
    """(family, type, proto, sockaddr) for every address of every host, in order, deduplicated.

    ``None`` is the default: the wildcard address of each family, 0.0.0.0 and ::.
    """
    results: list[Endpoint] = []
    seen: set[tuple[int, object]] = set()
    for host in hosts:
        try:
            infos = _getaddrinfo(host, port, socktype)
        except socket.gaierror as err:
            where = f"{host}:{port}" if host else f"port {port}"
            if err.errno == socket.EAI_SERVICE:
                raise ListenError(
                    f"unknown service {port!r}: use a port number or a name from /etc/services"
                ) from None
            raise ListenError(f"cannot resolve {where}: {err.strerror}") from None
        for family, stype, proto, _name, sockaddr in infos:
            key = (family, sockaddr[:2])
            if family in (socket.AF_INET, socket.AF_INET6) and key not in seen:
                seen.add(key)
                results.append((family, stype, proto, sockaddr))
    return results


def _family_name(where: str) -> str:
    return "IPv6" if where.startswith("[") else "IPv4"


def _explain(err: OSError, where: str, proto: str) -> str:
    if err.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: address already in use "
            f"(another daytime server or daytime.socket? choose another --port)"
        )
    if err.errno == errno.EACCES:
        return (
            f"cannot listen on {where}: permission denied; ports below 1024 need root: "
            f"run as root, use daytime.socket, or pick --port 1024 or higher"
        )
    if err.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: no such local address"
    if err.errno == errno.EAFNOSUPPORT:
        return f"cannot listen on {where}: this kernel has no {_family_name(where)}"
    return f"cannot {proto} on {where}: {err.strerror}"


def open_listeners(
    hosts: Iterable[str | None], port: str, backlog: int | None, udp: bool = False
) -> tuple[list[socket.socket], list[socket.socket]]:
    """Bound TCP listeners (and UDP sockets when ``udp``) for every address, or ListenError.

    No --listen (``hosts`` empty) means both wildcards, and a family the host lacks is
    skipped (see the module's docstring); an address asked for must be bound.  UDP sockets
    get no SO_REUSEADDR: Linux lets any local user bind a second UDP socket to the same
    address and port when both set it, and that socket then takes the requests.
    """
    hosts = list(hosts)
    default = not hosts
    backlog = socket.SOMAXCONN if backlog is None else backlog
    streams: list[socket.socket] = []
    datagrams: list[socket.socket] = []
    kinds = [(socket.SOCK_STREAM, streams)] + ([(socket.SOCK_DGRAM, datagrams)] if udp else [])
    try:
        for socktype, into in kinds:
            stream = socktype == socket.SOCK_STREAM
            for family, stype, proto, sockaddr in resolve(hosts or [None], port, socktype):
                where = format_endpoint(sockaddr)
                sock = None
                try:
                    sock = socket.socket(family, stype, proto)
                    if stream:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.bind(sockaddr)
                    if stream:
                        sock.listen(backlog)
                except OSError as err:
                    if sock is not None:
                        sock.close()
                    if default and err.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                        log.info(
                            f"not serving {'tcp' if stream else 'udp'} on {where}: "
                            f"no {_family_name(where)} here ({err.strerror})"
                        )
                        continue
                    raise ListenError(
                        _explain(err, where, "listen" if stream else "bind UDP")
                    ) from None
                into.append(sock)
    except BaseException:
        for sock in streams + datagrams:
            sock.close()
        raise
    if not streams:
        raise ListenError(f"no usable address for port {port} (no IPv4 or IPv6 configured?)")
    return streams, datagrams


# -- then, standalone with --user: dropping root after binding, all or nothing


class PrivilegeError(Exception):
    """The drop was asked for and did not happen completely: refuse to serve."""


def drop_to(user: str) -> None:
    """Become ``user`` with exactly its groups; verify that root cannot be regained."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise PrivilegeError(f"--user {user}: no such user") from None
    if os.geteuid() != 0:
        if os.geteuid() == entry.pw_uid:
            return
        raise PrivilegeError(
            f"--user {user}: only root can change user; start as root or drop --user"
        )
    try:
        os.initgroups(entry.pw_name, entry.pw_gid)  # supplementary groups: the user's, not root's
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)  # sets real, effective and saved uid: no way back
    except OSError as err:
        raise PrivilegeError(f"--user {user}: cannot drop privileges: {err.strerror}") from None
    if entry.pw_uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            raise PrivilegeError(f"--user {user}: root could be regained after the drop")
    if os.getuid() != entry.pw_uid or os.geteuid() != entry.pw_uid or os.getegid() != entry.pw_gid:
        raise PrivilegeError(f"--user {user}: the drop did not take effect")
