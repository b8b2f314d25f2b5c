# SPDX-License-Identifier: MIT
"""udp.reply_source: the control message that sends a UDP reply from the address asked.

The integration tests (tests/integration/test_addresses.py) check it on real sockets; the
cases here are the ones a namespace cannot send to a connected client: a multicast request,
and which of two messages an IPv4 request on a dual-stack socket brings is used.  And
udp.enable_pktinfo, which asks the kernel for those messages, on real sockets.
"""

from __future__ import annotations

import socket
import struct

import pytest

from daytime_sd import log
from daytime_sd.udp import IP_PKTINFO, IPV6_PKTINFO, IPV6_RECVPKTINFO, enable_pktinfo, reply_source

LO, ETH = 1, 3


def in_pktinfo(ifindex: int, spec_dst: str, addr: str) -> bytes:
    return struct.pack("=i", ifindex) + socket.inet_aton(spec_dst) + socket.inet_aton(addr)


def in6_pktinfo(addr: str, ifindex: int) -> bytes:
    return socket.inet_pton(socket.AF_INET6, addr) + struct.pack("=I", ifindex)


def v6(addr: str, ifindex: int) -> tuple[int, int, bytes]:
    return (socket.IPPROTO_IPV6, IPV6_PKTINFO, in6_pktinfo(addr, ifindex))


def test_ipv4_sends_back_spec_dst_with_no_interface() -> None:
    got = reply_source([(socket.IPPROTO_IP, IP_PKTINFO, in_pktinfo(ETH, "10.9.0.2", "10.9.0.2"))])
    assert got == [(socket.IPPROTO_IP, IP_PKTINFO, in_pktinfo(0, "10.9.0.2", "10.9.0.2"))]


def test_ipv4_broadcast_answers_from_the_local_address_the_kernel_names() -> None:
    request = in_pktinfo(ETH, "10.9.0.1", "10.9.0.255")
    (got,) = reply_source([(socket.IPPROTO_IP, IP_PKTINFO, request)])
    assert got[2][4:8] == socket.inet_aton("10.9.0.1")


def test_ipv6_keeps_the_interface_for_link_local_only() -> None:
    assert reply_source([v6("fd00:9::2", ETH)]) == [v6("fd00:9::2", 0)]
    assert reply_source([v6("::1", LO)]) == [v6("::1", 0)]
    assert reply_source([v6("fe80::9:2", ETH)]) == [v6("fe80::9:2", ETH)]


def test_ipv6_multicast_is_left_to_the_kernel() -> None:
    assert reply_source([v6("ff02::1", ETH)]) == []


def test_ipv4_on_a_dual_stack_socket_uses_ip_pktinfo() -> None:
    both = [
        v6("::ffff:10.9.0.2", ETH),
        (socket.IPPROTO_IP, IP_PKTINFO, in_pktinfo(ETH, "10.9.0.2", "10.9.0.2")),
    ]
    assert reply_source(both) == [
        (socket.IPPROTO_IP, IP_PKTINFO, in_pktinfo(0, "10.9.0.2", "10.9.0.2"))
    ]


def test_no_pktinfo_no_message() -> None:
    timestamp = (socket.SOL_SOCKET, 29, bytes(16))  # SO_TIMESTAMP, as Timestamping= may add
    assert reply_source([]) == [] == reply_source([timestamp])


def test_messages_of_other_kinds_or_levels_are_ignored() -> None:
    """Only IP_PKTINFO at IPPROTO_IP and IPV6_PKTINFO at IPPROTO_IPV6 are ours, whatever
    else a socket unit's options add (a type or level number next to ours)."""
    foreign = [
        (socket.IPPROTO_IP, 1, bytes(16)),  # IP_TOS
        (socket.IPPROTO_IP, 11, bytes(16)),  # IP_RECVERR
        (socket.SOL_SOCKET, IP_PKTINFO, bytes(16)),
        (socket.IPPROTO_IPV6, 49, in6_pktinfo("fd00:9::2", ETH) + bytes(4)),
        (socket.IPPROTO_IPV6, 52, in6_pktinfo("fd00:9::2", ETH) + bytes(4)),  # IPV6_HOPLIMIT
        (socket.SOL_SOCKET, IPV6_PKTINFO, in6_pktinfo("fd00:9::2", ETH) + bytes(4)),
        (58, IPV6_PKTINFO, in6_pktinfo("fd00:9::2", ETH) + bytes(4)),  # IPPROTO_ICMPV6
    ]
    assert reply_source(foreign) == []


def test_a_longer_message_is_read_at_its_fields_and_a_cut_one_ignored() -> None:
    ip = in_pktinfo(ETH, "10.9.0.2", "10.9.0.2")
    assert reply_source([(socket.IPPROTO_IP, IP_PKTINFO, ip + bytes(4))]) == [
        (socket.IPPROTO_IP, IP_PKTINFO, in_pktinfo(0, "10.9.0.2", "10.9.0.2"))
    ]
    assert reply_source([(socket.IPPROTO_IP, IP_PKTINFO, ip[:11])]) == []
    for addr, keep in (("fd00:9::2", 0), ("fe80::9:2", ETH)):
        longer = (socket.IPPROTO_IPV6, IPV6_PKTINFO, in6_pktinfo(addr, ETH) + bytes(4))
        assert reply_source([longer]) == [v6(addr, keep)]
    cut = (socket.IPPROTO_IPV6, IPV6_PKTINFO, in6_pktinfo("fd00:9::2", ETH)[:19])
    assert reply_source([cut]) == []


def test_a_multicast_message_is_passed_over_not_the_ones_after_it() -> None:
    assert reply_source([v6("ff02::1", ETH), v6("fd00:9::2", ETH)]) == [v6("fd00:9::2", 0)]


@pytest.mark.parametrize(
    ("addr", "link_local"),
    [("fe80::1", True), ("fe81::1", True), ("fea0::1", True), ("febf::1", True),
     ("fe00::1", False), ("fec0::1", False), ("fd80::1", False), ("2001:db8::1", False)],
)  # fmt: skip
def test_link_local_is_fe80_slash_10_exactly(addr: str, link_local: bool) -> None:
    assert reply_source([v6(addr, ETH)]) == [v6(addr, ETH if link_local else 0)]


# --- enable_pktinfo, on real sockets ----------------------------------------------------------


def _int_option(sock: socket.socket, level: int, option: int) -> int:
    return sock.getsockopt(level, option)


def test_an_ipv4_socket_asks_for_ip_pktinfo() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        assert _int_option(sock, socket.IPPROTO_IP, IP_PKTINFO) == 0
        enable_pktinfo(sock)
        assert _int_option(sock, socket.IPPROTO_IP, IP_PKTINFO) == 1


def test_an_ipv6_socket_asks_for_both_kinds() -> None:
    """A dual-stack IPv6 socket receives IPv4 datagrams too, which bring IP_PKTINFO."""
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    except OSError as err:  # a kernel without IPv6: nothing of ours to test
        pytest.skip(f"no IPv6 socket here: {err.strerror}")
    with sock:
        enable_pktinfo(sock)
        assert _int_option(sock, socket.IPPROTO_IPV6, IPV6_RECVPKTINFO) == 1
        assert _int_option(sock, socket.IPPROTO_IP, IP_PKTINFO) == 1


def test_a_socket_that_refuses_is_served_still_and_that_is_said(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log.setup("info", "stderr")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        enable_pktinfo(sock)  # no exception: the socket is served, replies from the kernel's pick
    err = capsys.readouterr().err
    assert "may leave from another address than the one asked" in err
    assert "cannot ask for the destination address" in err
