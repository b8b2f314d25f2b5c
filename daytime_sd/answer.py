# SPDX-License-Identifier: MIT
"""Answering a TCP client: the line, our FIN, and a clean close.

The order matters: send the line, shut down our side (the client sees EOF), then read and
discard whatever the client sent until it closes or the linger bound runs out.  Closing a
socket with unread input makes Linux send RST instead of FIN, and a client that wrote
before reading would then lose its line to ECONNRESET.

``answer_once`` does it all, blocking, where a process exists for exactly one connection
(Accept=yes, inetd ``nowait``); ``answer_now`` does the first two steps for the serving
loop, which leaves the rest to closing.py.
"""

from __future__ import annotations

import _socket
import time

# A client's connection: the C socket type, which socket.socket extends.  The per-connection
# path does without the socket module (bench/ output, "Import costs"), and the accept loop
# without its Python layer (accepting.py); test_private_api checks the shape we use.
Connection = _socket.socket
_SEND_FLAGS = _socket.MSG_DONTWAIT | _socket.MSG_MORE  # MSG_MORE: the line leaves with the FIN


def answer_now(conn: Connection, line: bytes) -> bool:
    """The line and our FIN, without blocking; False, and ``conn`` closed, if that failed
    (the client reset first).  A fresh socket buffer takes a line at once."""
    try:
        conn.send(line, _SEND_FLAGS)
        conn.shutdown(_socket.SHUT_WR)
    except OSError:
        conn.close()
        return False
    return True


def answer_once(sock: Connection, line: bytes, linger: float) -> bool:
    """Send ``line``, half-close, drain input for at most ``linger`` seconds, close.

    Returns whether the whole line was handed to the kernel.  Never raises OSError: the
    client may have reset or vanished, which is not our error.
    """
    sent = False
    try:
        sock.settimeout(max(linger, 0.5))  # a client that never reads cannot block us
        sock.sendall(line, _socket.MSG_MORE)  # the line leaves with the FIN, in one segment
        sent = True
        sock.shutdown(_socket.SHUT_WR)
        deadline = time.monotonic() + linger
        buf = bytearray(65536)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            if not sock.recv_into(buf):
                break
    except OSError:  # includes TimeoutError: the bound ran out
        pass
    finally:
        sock.close()
    return sent
