# SPDX-License-Identifier: MIT
"""Socket addresses as people read them: ``[::1]:13``, and IPv4-mapped IPv6 as plain IPv4."""

from __future__ import annotations

_MAPPED_PREFIX = "::ffff:"


def unmap(host: str) -> str:
    """``::ffff:192.0.2.1`` → ``192.0.2.1``: a dual-stack socket sees IPv4 clients mapped.

    Only that form: ``::ffff:0:192.0.2.1`` (IPv4-translated, RFC 2765) is an IPv6 address.
    """
    if host[: len(_MAPPED_PREFIX)].lower() == _MAPPED_PREFIX:
        rest = host[len(_MAPPED_PREFIX) :]
        if "." in rest and ":" not in rest:
            return rest
    return host


def split(sockaddr: object) -> tuple[str, int]:
    """(host, port) of an AF_INET/AF_INET6 address; ("local", 0) for AF_UNIX and others."""
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        host, port = sockaddr[0], sockaddr[1]
        if isinstance(host, str) and isinstance(port, int):
            return unmap(host.split("%", 1)[0] if "%" in host else host), port
    return "local", 0


def format_endpoint(sockaddr: object) -> str:
    """``127.0.0.1:13``, ``[::1]:13`` or ``local``."""
    host, port = split(sockaddr)
    if host == "local":
        return str(sockaddr) if isinstance(sockaddr, str) and sockaddr else "local"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
