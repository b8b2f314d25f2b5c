# SPDX-License-Identifier: MIT
"""One Daytime query to port 13 from an autopkgtest: check the answer, exit 1 if it is wrong.

    python3 debian/tests/query.py tcp|udp ADDRESS

The answer must be exactly one line, CRLF-terminated, in the default (ctime) format, within a
minute of this machine's clock.
"""

import socket
import sys
import time

proto, address = sys.argv[1], sys.argv[2]
family = socket.AF_INET6 if ":" in address else socket.AF_INET
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
with socket.socket(family, kind) as sock:
    sock.settimeout(20)
    if proto == "tcp":
        sock.connect((address, 13))
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    else:
        sock.sendto(b"\n", (address, 13))
        data = sock.recv(4096)
text = data.decode("ascii")
print(f"{proto} [{address}]:13 answered {text!r}")
body = text.removesuffix("\r\n")
if not text.endswith("\r\n") or "\n" in body or not body:
    sys.exit(f"FAIL: {proto} [{address}]:13: not exactly one CRLF-terminated line")
try:
    when = time.mktime(time.strptime(body, "%a %b %d %H:%M:%S %Y"))
except ValueError:
    sys.exit(f"FAIL: {proto} [{address}]:13: not in ctime format")
if abs(when - time.time()) > 60:
    sys.exit(f"FAIL: {proto} [{address}]:13: {abs(when - time.time()):.0f} s off")
