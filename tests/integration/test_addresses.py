"""Issue 21: every address a host has, in network namespaces of our own.

UDP replies leave from the address the request was sent to (item 2), whatever socket the
request came in on: a connected UDP client (nc -u, most client libraries) takes replies from
that address only.  Each namespace has addresses no test host has (10.9.0.0/24, fd00:9::/64,
link-local fe80::9:x) on a veth pair, so each destination is asked from a source address the
kernel would have chosen as the reply's source had we not said which.
"""

from __future__ import annotations

from .support import CTIME, ask_in_netns, needs_root, netns, service

PORT = 1313  # each namespace is new: every port is free in it

SEVERAL_ADDRESSES = """
ip addr add 127.0.0.2/8 dev lo
ip link add v0 type veth peer name v1
ip link set v0 up
ip link set v1 up
ip addr add 10.9.0.1/24 dev v0
ip addr add 10.9.0.2/24 dev v0
ip addr add fd00:9::1/64 dev v0 nodad
ip addr add fd00:9::2/64 dev v0 nodad
ip addr add fe80::9:1/64 dev v0 nodad
ip addr add fe80::9:2/64 dev v0 nodad
"""
# (source, destination): the source is never the address the reply must come from.
IPV4 = [
    ("127.0.0.2", "127.0.0.1"),
    ("127.0.0.1", "127.0.0.2"),
    ("10.9.0.1", "10.9.0.2"),
    ("127.0.0.1", "10.9.0.1"),
]
IPV6 = [
    (None, "::1"),
    ("fd00:9::1", "fd00:9::2"),
    ("fd00:9::2", "fd00:9::1"),
    ("fe80::9:1%v0", "fe80::9:2%v0"),
]


def assert_all_answered(answers: dict[str, str], pairs: list[tuple[str | None, str]]) -> None:
    assert sorted(answers) == sorted(dest for _, dest in pairs)
    wrong = {dest: reply for dest, reply in answers.items() if not CTIME.match(reply.encode())}
    assert not wrong, f"no reply from the address asked: {wrong}"


@needs_root("creating a network namespace")
def test_udp_replies_come_from_the_address_asked_standalone() -> None:
    """The default listeners: 0.0.0.0 and [::] with IPV6_V6ONLY, one socket per family."""
    pairs = IPV4 + IPV6
    with (
        netns(SEVERAL_ADDRESSES) as enter,
        service(["--port", str(PORT), "--udp", "--udp-rate", "100"], wrap=enter),
    ):
        answers = ask_in_netns(enter, "udp", [(s, d, PORT) for s, d in pairs])
    assert_all_answered(answers, pairs)


@needs_root("creating a network namespace")
def test_udp_replies_come_from_the_address_asked_on_a_dual_stack_socket() -> None:
    """One [::] socket with IPV6_V6ONLY off, as daytime-udp.socket's ListenDatagram=13 is
    (BindIPv6Only=both): IPv4 requests arrive on it from IPv4-mapped sources."""
    pairs = IPV4 + IPV6
    activate = ["--datagram", "-l", f"[::]:{PORT}"]
    with (
        netns(SEVERAL_ADDRESSES) as enter,
        service(["--udp-rate", "100"], activate=activate, wrap=enter) as svc,
    ):
        first = ask_in_netns(enter, "udp", [(None, "::1", PORT)])  # starts the service
        assert CTIME.match(first["::1"].encode()), first
        svc.ready()
        answers = ask_in_netns(enter, "udp", [(s, d, PORT) for s, d in pairs])
    assert_all_answered(answers, pairs)
