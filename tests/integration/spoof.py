# SPDX-License-Identifier: MIT
"""A flood of UDP datagrams, each from a new forged source in 127.1.0.0-127.255.255.255.

    spoof.py PORT RATE SECONDS SOURCE_PORT

Sends to 127.0.0.1:PORT through a raw socket (IP_HDRINCL, so root), at most RATE datagrams
a second for SECONDS, from SOURCE_PORT; prints the number sent every 0.25 s and at the end.
The kernel fills in the IP checksum and length; the UDP checksum is 0 (none).  All of
127/8 is local, so a socket bound to the wildcard address on SOURCE_PORT gets the replies.
"""

from __future__ import annotations

import socket
import struct
import sys
import time

FIRST = 0x010000  # 127.1.0.0: 127.0.0.0/16 is left to the real clients


def main() -> None:
    port, rate, seconds, source_port = map(float, sys.argv[1:5])
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    payload = b"spoofed"
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0, 64, socket.IPPROTO_UDP, 0,
        bytes([127, 1, 0, 0]), bytes([127, 0, 0, 1]),
    )  # fmt: skip
    udp = struct.pack("!HHHH", int(source_port), int(port), 8 + len(payload), 0)
    packet = bytearray(ip + udp + payload)
    target = ("127.0.0.1", 0)
    source = FIRST
    sent = 0
    start = time.monotonic()
    report = start
    while (now := time.monotonic()) - start < seconds:
        if now >= report:
            print(sent, flush=True)
            report += 0.25
        due = min(int((now - start) * rate), sent + 1000)
        if sent >= due:
            time.sleep(0.001)
            continue
        for _ in range(due - sent):
            packet[13], packet[14], packet[15] = source >> 16 & 255, source >> 8 & 255, source & 255
            source += 1
            try:
                sock.sendto(packet, target)
                sent += 1
            except OSError:  # ENOBUFS and the like: the flood is best effort
                pass
    print(sent, flush=True)


if __name__ == "__main__":
    main()
