# SPDX-License-Identifier: MIT
"""UDP Daytime: one reply datagram per request datagram, within budgets forgery cannot lift.

RFC 867 answers every datagram; the rules below leave some unanswered on purpose, because
a UDP source address is whatever the sender writes:

- No reply to a source port below 1024: two small services (echo, chargen, daytime) on
  two hosts can otherwise be set answering each other forever with one spoofed datagram.
  OpenBSD inetd refuses them for the same reason.
- At most ``rate`` replies per source per second, an IPv6 source counted by its /64 (a
  single host is commonly given a whole /64, and could otherwise claim 2**64 allowances);
  an IPv4-mapped IPv6 source counts as its IPv4 address.  A forged source turns any UDP
  responder into a reflector; the cap bounds what one victim address can be sent.
- At most ``total`` replies per second over all sources: a flood forging a new source per
  datagram is never over any per-source cap, and this bounds what we emit whatever the
  sources.  Sources not answered in the last half-minute or so may take at most half of
  it, so a flood of fresh forged sources cannot starve a client that was being answered.
  A client new during such a flood competes with the flood for that half: nothing in a
  Daytime request tells it from a forged one.  A flood that forges sources we answered
  earlier can still use the whole budget; the budget then still bounds what we send.

The limiter costs O(1) per datagram and its memory is bounded: a source is remembered only
when it is answered (so at most ``total`` per second, never more than MAX_TRACKED per
table), and tables are replaced, never swept, when their second or period ends.

AF_UNIX datagram sockets (``ListenDatagram=/path``) are served too: a sender that bound an
address is answered at it.  A local address cannot be forged (the kernel names the real
sender), so neither the port rule nor the per-source cap applies; the total budget does.  A
sender that bound no address cannot be answered at all: such datagrams are counted
(``unaddressed``) and the first is logged at debug level, so the socket is not silently
dead.  A datagram socket of another family (netlink, vsock) is drained the same way,
unanswered: its addresses are nothing a Daytime client has.

A reply leaves from the address its request was sent to, as NTP servers (chrony, ntpd)
answer: on a wildcard socket (``0.0.0.0``, ``[::]``, the shipped ``ListenDatagram=13``) the
kernel would otherwise choose the source by its routes, and a client that connected its UDP
socket (nc -u, most client libraries) takes replies from the address it asked only.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence

from daytime_sd import log
from daytime_sd.netaddr import format_endpoint, unmap
from daytime_sd.protocol import LineCache

BATCH = 256  # datagrams per socket per wake-up
MAX_TRACKED = 65536  # sources per table (this second's counts, each generation of known)
# Replies per second over all sources (see total_rate_for).  A reply is no larger than a
# typical request, so the budget bounds the volume sent, not an amplification; this is
# far above what Daytime clients ask, and negligible traffic for any victim.
DEFAULT_TOTAL_RATE = 1000
KNOWN_SECONDS = 30  # a source answered stays known for this long after, up to twice this

# Linux's values (<linux/in.h>, <linux/in6.h>), for a Python that does not export them:
# CPython 3.11 (bookworm) has no socket.IP_PKTINFO.
IP_PKTINFO: int = getattr(socket, "IP_PKTINFO", 8)
IPV6_RECVPKTINFO: int = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO: int = getattr(socket, "IPV6_PKTINFO", 50)
IPPROTO_IP = socket.IPPROTO_IP
IPPROTO_IPV6 = socket.IPPROTO_IPV6
# Room for an in_pktinfo and an in6_pktinfo (an IPv4 datagram on a dual-stack socket brings
# both), and for what a socket unit may add (Timestamping=); more is cut off (MSG_CTRUNC).
ANCILLARY_SPACE = 256
NO_IFINDEX = bytes(4)


def source_key(host: str) -> str | bytes:
    """What the per-source cap counts: the IPv4 address, or the /64 of an IPv6 address."""
    if ":" not in host:
        return host
    if "." in host:
        mapped = unmap(host)
        if mapped is not host:
            return mapped
    host, percent, scope = host.partition("%")
    try:
        prefix = socket.inet_pton(socket.AF_INET6, host)[:8]
    except OSError:  # not from the kernel's formatting; count it as given
        return host
    # fe80::/64 is on every link: the scope tells the links apart.
    return prefix + scope.encode() if percent else prefix


def enable_pktinfo(sock: socket.socket) -> None:
    """Have the kernel tell, with each datagram on an IPv4 or IPv6 socket, where it was sent.

    On an IPv6 socket both options: a dual-stack one (IPV6_V6ONLY off) receives IPv4
    datagrams too, which bring IP_PKTINFO.  A socket that refuses (not UDP, say) is served
    still, replying from the address the kernel chooses, and that is logged.
    """
    try:
        if sock.family == socket.AF_INET6:
            sock.setsockopt(IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        sock.setsockopt(IPPROTO_IP, IP_PKTINFO, 1)
    except OSError as err:
        log.warning(
            f"replies on {format_endpoint(sock.getsockname())} may leave from another "
            f"address than the one asked: cannot ask for the destination address ({err.strerror})"
        )


def reply_source(ancillary: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
    """The control message that sends a reply from the address its request was sent to.

    Linux only (ip(7), ipv6(7)): sendmsg takes back the in_pktinfo or in6_pktinfo that
    recvmsg gave.  IPv4: the kernel's ``ipi_spec_dst`` is the request's destination address,
    or, for a broadcast or multicast request, the local address it would answer from; it is
    sent back with no interface, so the routes choose that, as for any reply.  IPv6: the
    destination address, with its interface only when link-local (the address's scope).  A
    multicast destination cannot be a source: no message, and the kernel chooses.  An IPv4
    request on a dual-stack IPv6 socket brings both kinds; IP_PKTINFO is taken, for its
    ``ipi_spec_dst``.  Neither (not asked for, or cut off): no message.
    """
    found: list[tuple[int, int, bytes]] = []
    for level, kind, data in ancillary:
        if level == IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            return [(level, kind, NO_IFINDEX + data[4:12])]
        if level == IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(data) >= 20:
            if data[0] == 0xFF:  # ff00::/8, multicast
                continue
            if data[0] == 0xFE and data[1] & 0xC0 == 0x80:  # fe80::/10, link-local
                found = [(level, kind, data[:20])]
            else:
                found = [(level, kind, data[:16] + NO_IFINDEX)]
    return found


def total_rate_for(rate: int, total_rate: int | None = None) -> int:
    """The total budget: DEFAULT_TOTAL_RATE unless set, never below one source's cap.

    A per-source allowance above the total could never be used: an operator who raised
    ``rate`` for one heavy client (or a benchmark) means it to be honoured.
    """
    return max(DEFAULT_TOTAL_RATE, rate) if total_rate is None else total_rate


class RateLimiter:
    """Per-source and total reply budgets in one-second windows; pure, time passed in.

    The counts are this second's only, and a new second replaces the table, so no call
    ever walks one.  Sources answered in the current or the previous ``KNOWN_SECONDS``
    period are known (two generations, replaced the same way): they are not held to the
    fresh share, which is what keeps a client that was being answered when a flood of
    forged sources began answered through it.  A clock that jumps forgets the previous
    generation of each: it is only the one before when they are consecutive.
    """

    __slots__ = (
        "_counts", "_fresh", "_known", "_known_before", "_period", "_second", "_spent",
        "fresh", "rate", "total",
    )  # fmt: skip

    def __init__(self, rate: int, total: int | None = None) -> None:
        self.rate = rate
        self.total = total_rate_for(rate, total)
        # Sources not known admitted per second: half the budget, and half the table, so
        # that known sources always find room.
        self.fresh = min((self.total + 1) // 2, MAX_TRACKED // 2)
        self._second = -1
        self._counts: dict[str | bytes, int] = {}  # source → replies this second
        self._spent = 0  # replies this second, all sources
        self._fresh = 0  # sources not known admitted this second
        self._period = -1
        self._known: set[str | bytes] = set()  # answered this period
        self._known_before: set[str | bytes] = set()  # answered the period before

    def _window(self, now: float) -> None:
        second = int(now)
        if second != self._second:
            self._counts = {}
            self._second = second
            self._spent = 0
            self._fresh = 0
            period = second // KNOWN_SECONDS
            if period != self._period:
                consecutive = period == self._period + 1
                self._known_before = self._known if consecutive else set()
                self._known = set()
                self._period = period

    def allow(self, source: str | bytes, now: float) -> bool:
        self._window(now)
        if self._spent >= self.total:
            return False
        count = self._counts.get(source, 0)
        if count >= self.rate:
            return False
        if not count:  # the source's first reply this second
            if len(self._counts) >= MAX_TRACKED:
                # Answering an untracked source would leave it uncapped: refuse it instead.
                return False
            known = self._known
            if source not in known:
                if source not in self._known_before:
                    if self._fresh >= self.fresh:
                        return False
                    self._fresh += 1
                if len(known) < MAX_TRACKED:
                    known.add(source)
        self._counts[source] = count + 1
        self._spent += 1
        return True

    def allow_any(self, now: float) -> bool:
        """A reply that only the total budget limits (a local sender cannot be forged)."""
        self._window(now)
        if self._spent >= self.total:
            return False
        self._spent += 1
        return True

    def tracked(self) -> int:
        """Sources held in memory, in all the tables."""
        return len(self._counts) + len(self._known) + len(self._known_before)


class DatagramResponder:
    """Answers the datagrams of ``sockets``; on IPv4 and IPv6 ones, from the address asked.

    It takes the sockets as they come, ours or systemd's, and asks the kernel for each
    datagram's destination address on every IPv4 and IPv6 one (enable_pktinfo).
    """

    def __init__(
        self,
        sockets: Sequence[socket.socket],
        cache: LineCache,
        rate: int,
        total_rate: int | None = None,
    ) -> None:
        self.sockets = list(sockets)
        self.by_fd = {sock.fileno(): sock for sock in sockets}
        # Which loop answers each socket, decided once: socket.socket's .family builds an
        # AddressFamily member on every read, too much for each wake-up of a flood.
        self.inet_fds = {
            sock.fileno() for sock in sockets if sock.family in (socket.AF_INET, socket.AF_INET6)
        }
        for fd in self.inet_fds:
            enable_pktinfo(self.by_fd[fd])
        self.cache = cache
        self.limiter = RateLimiter(rate, total_rate)
        self.answered = 0
        self.refused_low_port = 0
        self.rate_limited = 0
        self.unaddressed = 0  # datagrams with no address to answer at

    def on_readable(self, fd: int) -> None:
        sock = self.by_fd[fd]
        if fd in self.inet_fds:
            self._inet(sock)
        else:
            self._local(sock)

    def _inet(self, sock: socket.socket) -> None:
        line = self.cache.line(time.time())
        now = time.monotonic()  # the budgets' windows: a clock step must not reset them
        allow = self.limiter.allow
        for _ in range(BATCH):
            try:
                # Contents are ignored: a 1-byte buffer makes the kernel drop the rest of a
                # datagram of any size (0 bytes to 64 KiB) in the same call.
                _data, ancillary, _flags, addr = sock.recvmsg(1, ANCILLARY_SPACE)
            except BlockingIOError:
                return
            except OSError:  # ICMP errors from earlier replies surface here; not fatal
                continue
            host, port = addr[0], addr[1]
            if port < 1024:
                self.refused_low_port += 1
                if log.enabled(7):  # a flood must not pay for formatting unseen messages
                    log.debug(f"ignoring datagram from privileged port {format_endpoint(addr)}")
                continue
            if not line:  # withheld (--require-sync): no reply, and no budget spent
                continue
            if not allow(source_key(host), now):
                self.rate_limited += 1
                continue
            try:
                sock.sendmsg((line,), reply_source(ancillary), 0, addr)
                self.answered += 1
            except OSError:
                pass

    def _local(self, sock: socket.socket) -> None:
        line = self.cache.line(time.time())
        now = time.monotonic()
        for _ in range(BATCH):
            try:
                _data, addr = sock.recvfrom(1)
            except BlockingIOError:
                return
            except OSError:
                continue
            # A path (str), an abstract or autobound name (bytes); None or "" when the sender
            # bound nothing.  Another family's tuple is no address we reply to either.
            if not addr or not isinstance(addr, (str, bytes)):
                self.unaddressed += 1
                if self.unaddressed == 1 and log.enabled(7):
                    log.debug(
                        f"datagram on {format_endpoint(sock.getsockname())} has no return "
                        "address (the sender bound none); not answered, and not logged again"
                    )
                continue
            if not line:  # withheld (--require-sync)
                continue
            if not self.limiter.allow_any(now):
                self.rate_limited += 1
                continue
            try:
                sock.sendto(line, addr)
                self.answered += 1
            except OSError:  # gone, full, or not writable by us: the sender's loss
                pass
