# SPDX-License-Identifier: MIT
"""pyepoll: the least a CPython in-process daytime server with a clean close can do (a reference).

bench/cepoll.c's loop in CPython: a non-blocking listener in epoll, accept until EAGAIN,
and for each connection the line with the FIN in one segment (MSG_MORE, then shutdown),
as daytime-sd sends it.  Instead of closing at once (which resets a client whose input is
unread) the connections answered in a round are closed together a round at least 2 ms
later, after one non-blocking read: daytime-sd's clean close without its linger, its bound
or its timers.  Started with -S and importing only built-in modules, it shows what the
interpreter costs an epoll loop on this machine; bench/cepoll.c shows the same loop in C.

usage: python3 -S pyepoll.py HOST PORT
"""

import _socket
import select
import sys
import time


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    listener = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM, 0)
    listener.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(4096)
    listener.setblocking(False)
    ep = select.epoll()
    ep.register(listener.fileno(), select.EPOLLIN)
    accept = listener._accept  # type: ignore[attr-defined]  # a bare fd, no object
    family, stream = _socket.AF_INET, _socket.SOCK_STREAM
    flags = _socket.MSG_DONTWAIT | _socket.MSG_MORE
    drain = bytearray(4096)
    stamp, line = 0, b""
    answered: list[_socket.socket] = []  # this round's, closed 2 ms later
    closing: list[_socket.socket] = []
    close_at = 0.0
    while True:
        for _fd, _events in ep.poll(0.002 if answered or closing else -1.0):
            now = int(time.time())
            if now != stamp:
                stamp, line = now, (time.ctime(now) + "\r\n").encode()
            while True:
                try:
                    fd, _addr = accept()
                except BlockingIOError:
                    break
                conn = _socket.socket(family, stream, 0, fd)
                try:
                    conn.send(line, flags)
                    conn.shutdown(_socket.SHUT_WR)
                except OSError:
                    conn.close()
                    continue
                answered.append(conn)
        mono = time.monotonic()
        if mono >= close_at:
            for conn in closing:
                try:  # noqa: SIM105  # contextlib is not a built-in module
                    conn.recv_into(drain, 0, _socket.MSG_DONTWAIT)
                except OSError:
                    pass
                conn.close()
            closing, answered = answered, []
            close_at = mono + 0.002


if __name__ == "__main__":
    main()
