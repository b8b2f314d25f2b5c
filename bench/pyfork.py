# SPDX-License-Identifier: MIT
"""pyfork: the least a CPython fork-per-connection daytime server can do (a reference).

Blocking accept, fork, the child sends the line with the FIN and _exits, the parent closes
its copy at once (no linger: a talkative client may see RST) and reaps without blocking.
Started with -S and importing only built-in modules, it shows what fork costs CPython on
this machine, below anything daytime-sd's --fork can reach; bench/cfork.c shows what it
costs C.  The difference is the interpreter: its memory to copy at fork, and the pages the
child writes (reference counts) before it can exit.

usage: python3 -S pyfork.py HOST PORT
"""

import _socket
import os
import sys
import time


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    listener = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM, 0)
    listener.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(4096)
    flags = _socket.MSG_DONTWAIT | _socket.MSG_MORE
    stamp, line = 0, b""
    while True:
        fd, _addr = listener._accept()  # type: ignore[attr-defined]  # a bare fd, no object
        now = int(time.time())
        if now != stamp:
            stamp, line = now, (time.ctime(now) + "\r\n").encode()
        if os.fork() == 0:
            conn = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM, 0, fd)
            try:
                conn.send(line, flags)
                conn.shutdown(_socket.SHUT_WR)
            finally:
                os._exit(0)
        os.close(fd)
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break


if __name__ == "__main__":
    main()
