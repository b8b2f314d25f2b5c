"""UDP Daytime: one reply datagram per request datagram, with two safety rules.

- No reply to a source port below 1024: two small services (echo, chargen, daytime) on
  two hosts can otherwise be set answering each other forever with one spoofed datagram.
  OpenBSD inetd refuses them for the same reason.
- At most ``rate`` replies per source address per second: a forged source turns any UDP
  responder into a reflector; the cap bounds what one victim address can be sent.
"""

from __future__ import annotations

import _socket
import time

from daytime_sd import log
from daytime_sd.netaddr import format_endpoint
from daytime_sd.protocol import LineCache

TYPE_CHECKING = False  # collections.abc costs memory every forked child copies
if TYPE_CHECKING:
    from collections.abc import Sequence

BATCH = 256  # datagrams per socket per wake-up
MAX_TRACKED = 65536  # source addresses remembered for the rate limit before a sweep


class RateLimiter:
    """Fixed one-second windows per source address; pure, time passed in."""

    __slots__ = ("_seen", "rate")

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._seen: dict[str, list[int]] = {}  # address → [window second, count]

    def allow(self, source: str, now: float) -> bool:
        second = int(now)
        entry = self._seen.get(source)
        if entry is None or entry[0] != second:
            if len(self._seen) >= MAX_TRACKED:
                self._seen = {k: v for k, v in self._seen.items() if v[0] == second}
            self._seen[source] = [second, 1]
            return True
        if entry[1] >= self.rate:
            return False
        entry[1] += 1
        return True


class DatagramResponder:
    def __init__(self, sockets: Sequence[_socket.socket], cache: LineCache, rate: int) -> None:
        self.sockets = list(sockets)
        self.by_fd = {sock.fileno(): sock for sock in sockets}
        self.cache = cache
        self.limiter = RateLimiter(rate)
        self.answered = 0
        self.refused_low_port = 0
        self.rate_limited = 0

    def on_readable(self, fd: int) -> None:
        sock = self.by_fd[fd]
        now = time.time()
        line = self.cache.line(now)
        for _ in range(BATCH):
            try:
                # Contents are ignored: a 1-byte buffer makes the kernel drop the rest of a
                # datagram of any size (0 bytes to 64 KiB) in the same call.
                _data, addr = sock.recvfrom(1)
            except BlockingIOError:
                return
            except OSError:  # ICMP errors from earlier replies surface here; not fatal
                continue
            if not isinstance(addr, tuple):
                continue
            host, port = addr[0], addr[1]
            if port < 1024:
                self.refused_low_port += 1
                if log.enabled(7):  # a flood must not pay for formatting unseen messages
                    log.debug(f"ignoring datagram from privileged port {format_endpoint(addr)}")
                continue
            if not self.limiter.allow(host, now):
                self.rate_limited += 1
                continue
            try:
                sock.sendto(line, addr)
                self.answered += 1
            except OSError:
                pass
