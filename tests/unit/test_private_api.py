# SPDX-License-Identifier: MIT
"""The private names daytime-sd still uses, each where a bench/ figure says it pays, and
the shape we rely on: a Python that changes it fails here, not in a client's connection.

- ``_socket.socket``, the C socket type (answer.Connection): the per-connection path does
  without the ``socket`` module (bench/ output, "Import costs"); the accept loop wraps each
  client in it without the Python layer (bench/ output, "Hot path: private names").
- ``_socket.socket._accept()``: the accept loop's accept(2) (accepting.py), same figure.
"""

from __future__ import annotations

import _socket
import socket

import pytest

from daytime_sd.answer import Connection, answer_now


def test_the_c_type_is_what_socket_socket_extends() -> None:
    assert Connection is _socket.socket
    assert issubclass(socket.socket, _socket.socket)
    for method in ("send", "shutdown", "recv_into", "fileno", "close", "detach", "getpeername",
                   "getsockopt", "setblocking", "settimeout", "sendall"):  # fmt: skip
        assert callable(getattr(_socket.socket, method)), method


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_accept_gives_a_descriptor_and_the_peer_and_the_c_type_wraps_it(family: int) -> None:
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind((host, 0))
        listener.listen(1)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):  # an empty queue: what ends a batch
            listener._accept()  # type: ignore[attr-defined]
        with socket.create_connection(listener.getsockname()[:2], timeout=5) as client:
            listener.setblocking(True)
            fd, addr = listener._accept()  # type: ignore[attr-defined]
            assert isinstance(fd, int) and fd > 2
            assert addr[:2] == client.getsockname()[:2]
            # Positional (family, type, proto, fileno), as accepting.py makes it.
            conn = _socket.socket(family, _socket.SOCK_STREAM, 0, fd)
            try:
                assert (conn.family, conn.type, conn.fileno()) == (family, socket.SOCK_STREAM, fd)
                assert answer_now(conn, b"line\r\n")
                client.settimeout(5)
                assert client.recv(100) == b"line\r\n" and client.recv(100) == b""
            finally:
                conn.close()


def test_the_c_type_wraps_a_descriptor_it_is_handed() -> None:
    """activation.py: ``_socket.socket(fileno=fd)`` learns the family and type itself."""
    left, right = socket.socketpair()
    with left, right:
        wrapped = _socket.socket(fileno=right.fileno())
        assert (wrapped.family, wrapped.type) == (socket.AF_UNIX, socket.SOCK_STREAM)
        wrapped.detach()
