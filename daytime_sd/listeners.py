# SPDX-License-Identifier: MIT
"""Standalone listeners: getaddrinfo, one socket per result, bind, listen.

The classic method (Stevens, UNP 11.6) with the two details that make dual-stack work:
``IPV6_V6ONLY`` on IPv6 sockets so ``0.0.0.0`` and ``::`` can both be bound on one port,
and ``SO_REUSEADDR`` so a restart does not wait out TIME_WAIT.
"""

from __future__ import annotations

import _socket
import errno

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


def resolve(hosts: Iterable[str | None], port: str, socktype: int) -> list[Endpoint]:
    """(family, type, proto, sockaddr) for every address of every host, in order, deduplicated."""
    results: list[Endpoint] = []
    seen: set[tuple[int, object]] = set()
    for host in hosts:
        try:
            infos = _socket.getaddrinfo(
                _host_bytes(host),
                port,
                _socket.AF_UNSPEC,
                socktype,
                0,
                _socket.AI_PASSIVE | _socket.AI_ADDRCONFIG,
            )
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
    return f"cannot {proto} on {where}: {err.strerror}"


def open_listeners(
    hosts: Iterable[str | None], port: str, backlog: int | None, udp: bool = False
) -> tuple[list[_socket.socket], list[_socket.socket]]:
    """Bound TCP listeners (and UDP sockets when ``udp``) for every address, or ListenError."""
    hosts = list(hosts) or [None]
    backlog = _socket.SOMAXCONN if backlog is None else backlog
    streams: list[_socket.socket] = []
    datagrams: list[_socket.socket] = []
    kinds = [(_socket.SOCK_STREAM, streams)] + ([(_socket.SOCK_DGRAM, datagrams)] if udp else [])
    try:
        for socktype, into in kinds:
            for family, stype, proto, sockaddr in resolve(hosts, port, socktype):
                sock = _socket.socket(family, stype, proto)
                into.append(sock)
                where = format_endpoint(sockaddr)
                try:
                    sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
                    if family == _socket.AF_INET6:
                        sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 1)
                    sock.bind(sockaddr)
                    if socktype == _socket.SOCK_STREAM:
                        sock.listen(backlog)
                except OSError as err:
                    proto_name = "listen" if socktype == _socket.SOCK_STREAM else "bind UDP"
                    raise ListenError(_explain(err, where, proto_name)) from None
    except BaseException:
        for sock in streams + datagrams:
            sock.close()
        raise
    if not streams:
        raise ListenError(f"no usable address for port {port} (no IPv4 or IPv6 configured?)")
    return streams, datagrams
