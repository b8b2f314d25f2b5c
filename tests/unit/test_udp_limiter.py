# SPDX-License-Identifier: MIT
"""The UDP reply budgets: per source (IPv6 by /64), in total, and bounded under forged floods."""

from __future__ import annotations

import time

import pytest

from daytime_sd import udp
from daytime_sd.udp import MAX_TRACKED, RateLimiter, source_key, total_rate_for

NOW = 1_795_500_000.25  # a real clock's magnitude: seconds are not small cached ints
PERIOD = udp.KNOWN_SECONDS


def spoofed(count: int, start: int = 0) -> list[str]:
    """``count`` distinct IPv4 sources, as a flood forging one per datagram would use."""
    return [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(start, start + count)]


def flood(limiter: RateLimiter, sources: list[str], now: float) -> int:
    """How many of ``sources`` are answered, one datagram each, within a generous deadline.

    Not a benchmark: the old limiter rebuilt its table for every new source past
    MAX_TRACKED and took minutes for 200,000; this bounds the work per call.
    """
    deadline = time.monotonic() + 20
    answered = 0
    for i, source in enumerate(sources):
        answered += limiter.allow(source, now)
        if i % 1000 == 0:
            assert time.monotonic() < deadline, f"{i} sources took 20 s"
    return answered


def test_cap_per_source_per_second() -> None:
    limiter = RateLimiter(3)
    assert [limiter.allow("a", 10.1) for _ in range(5)] == [True, True, True, False, False]
    assert limiter.allow("b", 10.2)  # another source is not affected
    assert limiter.allow("a", 11.0)  # a new second, a new allowance


def test_cap_holds_at_real_clock_values_and_large_rates() -> None:
    limiter = RateLimiter(1000)
    assert all(limiter.allow("a", NOW) for _ in range(1000))
    assert not limiter.allow("a", NOW + 0.5)
    assert limiter.allow("a", NOW + 1)
    small = RateLimiter(2)
    assert [small.allow("b", NOW) for _ in range(3)] == [True, True, False]


def test_a_clock_stepping_back_starts_a_new_window() -> None:
    limiter = RateLimiter(1)
    assert limiter.allow("a", NOW)
    assert not limiter.allow("a", NOW)
    assert limiter.allow("a", NOW - 5)  # the clock went back: not the same window


def test_a_new_second_resets_every_count() -> None:
    limiter = RateLimiter(2, total=4)
    assert [limiter.allow(s, NOW) for s in "aabbc"] == [True, True, True, True, False]
    assert not limiter.allow("a", NOW + 0.7)
    # One second on: each source and the total have their whole allowance again.
    assert [limiter.allow(s, NOW + 1) for s in "aabbc"] == [True, True, True, True, False]
    assert [limiter.allow(s, NOW + 2) for s in "ccaa"] == [True, True, True, True]


def test_the_total_budget_caps_replies_over_all_sources() -> None:
    limiter = RateLimiter(5, total=10)
    assert limiter.fresh == 5
    sources = [f"192.0.2.{i}" for i in range(10)]
    for second, batch in ((NOW, sources[:5]), (NOW + 1, sources[5:])):
        assert all(limiter.allow(s, second) for s in batch)  # 5 new sources a second
    # Now every one of them is known; each could have 5, the total allows 10.
    answers = [limiter.allow(s, NOW + 2) for s in sources for _ in range(5)]
    assert sum(answers) == 10
    assert answers[:10] == [True] * 10
    assert not limiter.allow("198.51.100.1", NOW + 2.7)  # the budget is gone for everyone


def test_sources_not_known_take_at_most_half_the_budget() -> None:
    limiter = RateLimiter(5, total=9)
    assert limiter.fresh == 5  # half, rounded up
    assert sum(limiter.allow(s, NOW) for s in spoofed(100)) == 5
    # Returning to one already admitted this second is not another new source.
    assert limiter.allow(spoofed(1)[0], NOW)
    assert not limiter.allow(spoofed(1, start=100)[0], NOW)


def test_a_known_client_is_answered_through_a_flood_of_forged_sources() -> None:
    limiter = RateLimiter(5)  # the defaults: 1000 in total, 500 of them to new sources
    assert limiter.total == 1000
    assert limiter.allow("192.0.2.7", NOW - 1)  # the client, answered a second before
    for second in (NOW, NOW + 1, NOW + 2):
        assert flood(limiter, spoofed(200_000, start=int(second - NOW) * 200_000), second) == 500
        # After 200,000 forged sources in this second, the client still has its cap.
        assert [limiter.allow("192.0.2.7", second + 0.5) for _ in range(6)] == [True] * 5 + [False]
        # A client new during the flood competes with it for the share of new sources.
        assert not limiter.allow(f"192.0.2.{100 + int(second - NOW)}", second + 0.5)
    # 600,000 sources in three seconds; only the 1,501 answered (and the client) are held.
    assert limiter.tracked() <= 2 + 501 * 4


def test_memory_stays_bounded_when_the_budget_is_huge() -> None:
    limiter = RateLimiter(1, total=10**9)
    assert limiter.fresh == MAX_TRACKED // 2
    assert limiter.allow("192.0.2.7", NOW - 1)
    assert flood(limiter, spoofed(200_000), NOW) == MAX_TRACKED // 2
    assert limiter.tracked() <= 3 * MAX_TRACKED
    assert limiter.allow("192.0.2.7", NOW + 0.9)  # known: room is kept for it
    assert not limiter.allow("192.0.2.7", NOW + 0.9)  # and it is still capped


def test_no_table_outgrows_max_tracked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(udp, "MAX_TRACKED", 8)
    start = (int(NOW) // PERIOD + 1) * PERIOD
    limiter = RateLimiter(1, total=1000)
    assert limiter.fresh == 4  # half the table
    known = [f"192.0.2.{i}" for i in range(8)]
    assert [limiter.allow(s, start) for s in known] == [True] * 4 + [False] * 4
    assert all(limiter.allow(s, start + 1) for s in known)  # 4 known, 4 new
    # A new period: all 8 known from the one before fill this second's table, and a new
    # source finds it full although its share is unused; it is refused, not left uncapped.
    assert all(limiter.allow(s, start + PERIOD) for s in known)
    assert not limiter.allow("198.51.100.1", start + PERIOD)
    assert limiter.tracked() <= 3 * 8
    assert limiter.allow("198.51.100.1", start + PERIOD + 1)
    assert all(limiter.allow(s, start + PERIOD + 1) for s in known[:7])  # carried over
    assert not limiter.allow(known[7], start + PERIOD + 1)  # the table is full again


def test_known_sources_are_remembered_for_one_to_two_periods() -> None:
    start = (int(NOW) // PERIOD + 1) * PERIOD  # the first second of a period
    limiter = RateLimiter(1, total=2)  # one new source a second
    assert limiter.allow("old", start + PERIOD - 1)  # answered at the end of a period
    assert limiter.allow("a", start + PERIOD)
    assert not limiter.allow("b", start + PERIOD)  # the share of new sources is spent
    assert limiter.allow("old", start + PERIOD)  # known from the period before
    assert limiter.allow("a", start + PERIOD + 1)  # known since a second ago: not new
    assert limiter.allow("f", start + PERIOD + 1)  # so the new source's share is there
    # Two periods on without a reply: forgotten, a new source again.
    assert limiter.allow("c", start + 3 * PERIOD)
    assert not limiter.allow("old", start + 3 * PERIOD)
    # A known source answered in the period before is carried into this one.
    assert limiter.allow("c", start + 4 * PERIOD)  # known: no new-source share needed
    assert limiter.allow("d", start + 4 * PERIOD)
    assert limiter.allow("c", start + 5 * PERIOD)
    assert limiter.allow("e", start + 5 * PERIOD)


def test_a_clock_jump_forgets_the_known_sources() -> None:
    limiter = RateLimiter(1, total=2)
    assert limiter.allow("a", NOW)
    assert limiter.allow("x", NOW + 2 * PERIOD + 1)  # not consecutive periods
    assert not limiter.allow("a", NOW + 2 * PERIOD + 1)
    jumped = RateLimiter(1, total=2)
    assert jumped.allow("a", NOW)
    assert jumped.allow("x", NOW - PERIOD)  # backwards: the same
    assert not jumped.allow("a", NOW - PERIOD)


def test_allow_any_spends_only_the_total() -> None:
    limiter = RateLimiter(1, total=3)
    assert limiter.allow("a", NOW)
    assert limiter.allow_any(NOW)
    assert limiter.allow_any(NOW)  # no per-source cap, no share of new sources
    assert not limiter.allow_any(NOW)
    assert not limiter.allow("b", NOW)  # the same budget
    assert limiter.allow_any(NOW + 1)
    assert limiter.tracked() == 1  # nothing remembered for it


def test_total_rate_defaults() -> None:
    assert total_rate_for(5) == udp.DEFAULT_TOTAL_RATE == 1000
    assert total_rate_for(1_000_000) == 1_000_000  # never below one source's cap
    assert total_rate_for(1_000_000, 50) == 50  # set explicitly: as set
    assert RateLimiter(5, 0).total == 0
    assert not RateLimiter(5, 0).allow("a", NOW)


@pytest.mark.parametrize(
    ("one", "same", "other"),
    [
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:3::1"),  # a /64
        ("2001:db8:1:2::1", "2001:0db8:0001:0002:0000:0000:0000:0009", "2001:db9:1:2::1"),
        ("::ffff:192.0.2.1", "192.0.2.1", "::ffff:192.0.2.2"),  # mapped: the IPv4 address
        ("::FFFF:192.0.2.1", "192.0.2.1", "192.0.2.2"),
        ("fe80::1%eth0", "fe80::2:3%eth0", "fe80::1%eth1"),  # link-local: per link
        ("fe80::1%eth0", "fe80::9%eth0", "fe80::1"),
        ("::1", "::2", "127.0.0.1"),
        # IPv4-compatible (deprecated, but forgeable): IPv6 addresses of ::/64, not IPv4.
        ("::192.0.2.1", "::198.51.100.7", "192.0.2.1"),
    ],
)
def test_sources_counted_as_one_and_apart(one: str, same: str, other: str) -> None:
    assert source_key(one) == source_key(same) != source_key(other)
    limiter = RateLimiter(1)
    assert limiter.allow(source_key(one), NOW)
    assert not limiter.allow(source_key(same), NOW)
    assert limiter.allow(source_key(other), NOW)


def test_source_keys() -> None:
    assert source_key("192.0.2.1") == "192.0.2.1"
    assert source_key("2001:db8:1:2:3:4:5:6") == bytes.fromhex("20010db800010002")
    assert source_key("fe80::1%lo") == bytes.fromhex("fe80000000000000") + b"lo"
    assert source_key("not:an:address") == "not:an:address"  # kept as given, still capped


@pytest.mark.parametrize("first", [0.25, 1.5])
def test_just_after_boot(first: float) -> None:
    """The responder passes time.monotonic(), which starts near 0 at boot: a source
    answered in the first seconds stays known for the period after theirs."""
    limiter = RateLimiter(1, total=2)  # one new source a second
    assert limiter.allow("client", first)
    assert limiter.allow("a", PERIOD + 0.5)  # the new-source share of this second...
    assert not limiter.allow("b", PERIOD + 0.5)  # ...is spent
    assert limiter.allow("client", PERIOD + 0.5)  # known from the period before


def test_the_default_total_holds_for_known_sources() -> None:
    limiter = RateLimiter(5)  # 1000 a second in total
    sources = spoofed(300)
    assert all(limiter.allow(s, NOW) for s in sources)  # 300 new: within the new share
    answers = [limiter.allow(s, NOW + 1) for s in sources for _ in range(5)]  # all known
    assert sum(answers) == 1000
    assert not limiter.allow_any(NOW + 1)


def test_a_large_per_source_cap_holds_below_the_total() -> None:
    limiter = RateLimiter(1000, total=5000)
    assert sum(limiter.allow("a", NOW) for _ in range(1001)) == 1000
    assert limiter.allow("b", NOW)


def test_allow_any_holds_a_large_total() -> None:
    limiter = RateLimiter(1, total=1000)
    assert sum(limiter.allow_any(NOW) for _ in range(1001)) == 1000


@pytest.mark.parametrize("size", [8, 300])
def test_a_source_answered_with_the_known_table_full_is_not_remembered(
    monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    monkeypatch.setattr(udp, "MAX_TRACKED", size)
    start = (int(NOW) // PERIOD + 1) * PERIOD
    limiter = RateLimiter(1, total=10 * size)
    share = limiter.fresh
    assert share == size // 2
    remembered = spoofed(size)
    assert all(limiter.allow(s, start) for s in remembered[:share])
    assert all(limiter.allow(s, start + 1) for s in remembered[share:])  # the table is full
    late = spoofed(share, start=size)
    assert all(limiter.allow(s, start + 2) for s in late)  # answered, not remembered
    assert limiter.tracked() == share + size  # this second's counts and the known table
    # The next second: fresh sources spend the share; the late ones are new again.
    assert all(limiter.allow(s, start + 3) for s in spoofed(share, start=2 * size))
    assert not any(limiter.allow(s, start + 3) for s in late)
    assert all(limiter.allow(s, start + 3) for s in remembered[:share])  # known: answered
    # The next period: the remembered fill this second's table, a new source finds it full.
    assert all(limiter.allow(s, start + PERIOD) for s in remembered)
    assert not limiter.allow("198.51.100.1", start + PERIOD)


def test_tracked_counts_every_table() -> None:
    start = (int(NOW) // PERIOD + 1) * PERIOD
    limiter = RateLimiter(1, total=10)
    assert limiter.tracked() == 0
    assert limiter.allow("a", start) and limiter.allow("b", start)
    assert limiter.tracked() == 2 + 2  # this second's counts, and known this period
    assert limiter.allow("a", start + PERIOD)
    assert limiter.tracked() == 1 + 1 + 2  # ...and known in the period before
