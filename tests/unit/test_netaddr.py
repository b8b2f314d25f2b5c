# SPDX-License-Identifier: MIT
"""Address display and IPv4-mapped conversion."""

from __future__ import annotations

import pytest

from daytime_sd.netaddr import format_endpoint, split, unmap


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("::FFFF:127.0.0.1", "127.0.0.1"),
        ("::ffff:1:2", "::ffff:1:2"),  # not an IPv4-mapped literal
        ("::ffff:0:192.0.2.1", "::ffff:0:192.0.2.1"),  # IPv4-translated: IPv6
        ("::1", "::1"),
        ("127.0.0.1", "127.0.0.1"),
    ],
)
def test_unmap(host: str, shown: str) -> None:
    assert unmap(host) == shown


def test_format_endpoint() -> None:
    assert format_endpoint(("127.0.0.1", 13)) == "127.0.0.1:13"
    assert format_endpoint(("::1", 13, 0, 0)) == "[::1]:13"
    assert format_endpoint(("::ffff:10.1.2.3", 40000, 0, 0)) == "10.1.2.3:40000"
    assert format_endpoint(("fe80::1%eth0", 13, 0, 2)) == "[fe80::1]:13"
    assert format_endpoint("/run/daytime.sock") == "/run/daytime.sock"
    assert format_endpoint(None) == "local"


def test_split() -> None:
    assert split(("::ffff:192.0.2.7", 99, 0, 0)) == ("192.0.2.7", 99)
    assert split(b"\0abstract") == ("local", 0)


def test_only_the_mapped_prefix_is_unmapped() -> None:
    # An IPv6 address with a dotted tail that is not IPv4-mapped stays as it is.
    assert unmap("fe80::192.0.2.1") == "fe80::192.0.2.1"
    assert unmap("::ffff") == "::ffff"


def test_split_accepts_only_host_and_port() -> None:
    assert split(("127.0.0.1", "13")) == ("local", 0)  # a port that is not a number
    assert split((b"127.0.0.1", 13)) == ("local", 0)  # a host that is not text
    assert split(("127.0.0.1",)) == ("local", 0)  # too short for an address
    assert split(None) == ("local", 0)
    assert split(("fe80::1%eth0%x", 13, 0, 2)) == ("fe80::1", 13)


def test_format_endpoint_of_names_and_unix_paths() -> None:
    assert format_endpoint(("myhost", 13)) == "myhost:13"  # a name sorts after "local"
    assert format_endpoint(b"\0abstract") == "local"  # abstract AF_UNIX: bytes
    assert format_endpoint("") == "local"  # unnamed AF_UNIX
