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

import _socket
import errno

from daytime_sd import log
from daytime_sd.netaddr import format_endpoint

TYPE_CHECKING = False  # typing and socket stay unimported at run time: see _host_bytes
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any


class ListenError(Exception):
    """We cannot listen where asked: exit 1, with a message that says what to do."""


Endpoint = tuple[int, int, int, "tuple[Any, ...]"]  # family, type, proto, sockaddr


def _host_bytes(host: str | None) -> bytes | None:
    """The name as getaddrinfo wants it, encoded here so an ASCII name needs no codec.

    Given a str, CPython's getaddrinfo encodes it with the "idna" codec, which imports
    stringprep, unicodedata and re: memory every forked child then pays to copy.  Non-ASCII
    names still go through IDNA (config checked they can).
    """
    if host is None:
        return None
    return host.encode("ascii") if host.isascii() else host.encode("idna")


def _getaddrinfo(host: str | None, port: str, socktype: int) -> list[Any]:
    """A number (or None, the wildcards) as it is; otherwise a name, with AI_ADDRCONFIG."""
    name = _host_bytes(host)
    passive = _socket.AI_PASSIVE
    try:
        return _socket.getaddrinfo(
            name, port, _socket.AF_UNSPEC, socktype, 0, passive | _socket.AI_NUMERICHOST
        )
    except _socket.gaierror as err:
        if host is None or err.errno != _socket.EAI_NONAME:  # EAI_NONAME: not a number
            raise
    return _socket.getaddrinfo(
        name, port, _socket.AF_UNSPEC, socktype, 0, passive | _socket.AI_ADDRCONFIG
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
        except _socket.gaierror as err:
            where = f"{host}:{port}" if host else f"port {port}"
            if err.errno == _socket.EAI_SERVICE:
                raise ListenError(
                    f"unknown service {port!r}: use a port number or a name from /etc/services"
                ) from None
            raise ListenError(f"cannot resolve {where}: {err.strerror}") from None
        for family, stype, proto, _name, sockaddr in infos:
            key = (family, sockaddr[:2])
            if family in (_socket.AF_INET, _socket.AF_INET6) and key not in seen:
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
) -> tuple[list[_socket.socket], list[_socket.socket]]:
    """Bound TCP listeners (and UDP sockets when ``udp``) for every address, or ListenError.

    No --listen (``hosts`` empty) means both wildcards, and a family the host lacks is
    skipped (see the module's docstring); an address asked for must be bound.  UDP sockets
    get no SO_REUSEADDR: Linux lets any local user bind a second UDP socket to the same
    address and port when both set it, and that socket then takes the requests.
    """
    hosts = list(hosts)
    default = not hosts
    backlog = _socket.SOMAXCONN if backlog is None else backlog
    streams: list[_socket.socket] = []
    datagrams: list[_socket.socket] = []
    kinds = [(_socket.SOCK_STREAM, streams)] + ([(_socket.SOCK_DGRAM, datagrams)] if udp else [])
    try:
        for socktype, into in kinds:
            stream = socktype == _socket.SOCK_STREAM
            for family, stype, proto, sockaddr in resolve(hosts or [None], port, socktype):
                where = format_endpoint(sockaddr)
                sock = None
                try:
                    sock = _socket.socket(family, stype, proto)
                    if stream:
                        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
                    if family == _socket.AF_INET6:
                        sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 1)
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
