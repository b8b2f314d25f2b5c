# SPDX-License-Identifier: MIT
"""Issue 21: every address a host has, in network namespaces of our own.

A family whose only address is on loopback can be listened on (item 3): as a number, and by
the default listeners, which cover every family the host can bind; a family that cannot be
bound is one clear line.

UDP replies leave from the address the request was sent to (item 2), whatever socket the
request came in on: a connected UDP client (nc -u, most client libraries) takes replies from
that address only.  Each namespace has addresses no test host has (10.9.0.0/24, fd00:9::/64,
link-local fe80::9:x) on a veth pair, so each destination is asked from a source address the
kernel would have chosen as the reply's source had we not said which.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import pytest

from .support import CTIME, PYTHON, REPO, ask_in_netns, base_env, needs_root, netns, service
from .test_standalone import assert_one_line_error

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


VETH = """
ip link add v0 type veth peer name v1
ip link set v0 up
ip link set v1 up
"""
# A container's usual network: IPv6 on loopback only, IPv4 on an interface too.  New
# interfaces (the veth pair) get no IPv6; lo has ::1 already.
IPV6_ON_LOOPBACK_ONLY = f"""
sysctl -qw net.ipv6.conf.default.disable_ipv6=1
{VETH}
ip addr add 10.9.0.1/24 dev v0
"""
# An IPv6-only host: IPv4 has 127.0.0.1 on lo, nothing else.
IPV4_ON_LOOPBACK_ONLY = f"""
{VETH}
ip addr add fd00:9::1/64 dev v0 nodad
"""
# IPv6 off everywhere, lo included: no IPv6 address at all.
NO_IPV6 = f"""
sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
{VETH}
ip addr add 10.9.0.1/24 dev v0
"""


def tcp_answers(enter: Sequence[str], addresses: Sequence[str]) -> dict[str, bool]:
    """{address: whether a TCP connection to it got a Daytime line}."""
    answers = ask_in_netns(enter, "tcp", [(None, address, PORT) for address in addresses])
    return {address: bool(CTIME.match(reply.encode())) for address, reply in answers.items()}


@needs_root("creating a network namespace")
@pytest.mark.parametrize(
    ("setup", "listen", "answering", "silent"),
    [
        (IPV6_ON_LOOPBACK_ONLY, ["::1"], ["::1"], ["127.0.0.1"]),
        (IPV6_ON_LOOPBACK_ONLY, ["::"], ["::1"], ["127.0.0.1", "10.9.0.1"]),
        (IPV6_ON_LOOPBACK_ONLY, [], ["::1", "127.0.0.1", "10.9.0.1"], []),
        (IPV4_ON_LOOPBACK_ONLY, ["127.0.0.1"], ["127.0.0.1"], ["::1"]),
        (IPV4_ON_LOOPBACK_ONLY, ["0.0.0.0"], ["127.0.0.1"], ["::1", "fd00:9::1"]),
        (IPV4_ON_LOOPBACK_ONLY, [], ["127.0.0.1", "::1", "fd00:9::1"], []),
        (NO_IPV6, [], ["127.0.0.1", "10.9.0.1"], []),
    ],
    ids=[
        "v6-lo-only-::1", "v6-lo-only-::", "v6-lo-only-default",
        "v4-lo-only-127.0.0.1", "v4-lo-only-0.0.0.0", "v4-lo-only-default",
        "no-ipv6-default",
    ],
)  # fmt: skip
def test_a_family_on_loopback_only_is_listened_on(
    setup: str, listen: list[str], answering: list[str], silent: list[str]
) -> None:
    argv = [arg for address in listen for arg in ("--listen", address)]
    with netns(setup) as enter, service([*argv, "--port", str(PORT)], wrap=enter):
        got = tcp_answers(enter, [*answering, *silent])
    assert got == {address: address in answering for address in got}


@needs_root("creating a network namespace")
def test_an_address_of_a_family_the_host_lacks_is_one_clear_line() -> None:
    with netns(NO_IPV6) as enter:
        proc = subprocess.run(
            [*enter, PYTHON, "-m", "daytime_sd", "--listen", "::1", "--port", str(PORT)],
            env=base_env(), cwd=REPO, capture_output=True, text=True, timeout=20,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert_one_line_error(proc, 1, f"[::1]:{PORT}", "no such local address")
