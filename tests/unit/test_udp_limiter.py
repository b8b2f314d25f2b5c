"""The per-source UDP reply cap."""

from __future__ import annotations

from daytime_sd import udp
from daytime_sd.udp import RateLimiter


def test_cap_per_source_per_second() -> None:
    limiter = RateLimiter(3)
    assert [limiter.allow("a", 10.1) for _ in range(5)] == [True, True, True, False, False]
    assert limiter.allow("b", 10.2)  # another source is not affected
    assert limiter.allow("a", 11.0)  # a new second, a new allowance


def test_table_is_swept_when_full(monkeypatch: object) -> None:
    limiter = RateLimiter(1)
    original = udp.MAX_TRACKED
    udp.MAX_TRACKED = 4
    try:
        for i in range(4):
            assert limiter.allow(str(i), 1.0)
        assert limiter.allow("late", 2.0)  # sweep drops the old window's entries
        assert len(limiter._seen) == 1
        assert not limiter.allow("late", 2.5)
    finally:
        udp.MAX_TRACKED = original


NOW = 1_795_500_000.25  # a real clock's magnitude: seconds are not small cached ints


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
    assert limiter.allow("a", NOW - 5)  # wall-clock time went back: not the same window


def test_the_sweep_keeps_the_current_window() -> None:
    limiter = RateLimiter(1)
    original = udp.MAX_TRACKED
    udp.MAX_TRACKED = 4
    try:
        for i in range(3):
            assert limiter.allow(str(i), NOW - 1)
        assert limiter.allow("current", NOW)
        assert limiter.allow("late", NOW)  # full: the sweep drops only the older window
        assert set(limiter._seen) == {"current", "late"}
        assert not limiter.allow("current", NOW)  # its count survived the sweep
        # A clock that went back: the sweep keeps that second only, not the later ones.
        assert limiter.allow("x", NOW - 9)
        assert limiter.allow("y", NOW - 9)
        assert limiter.allow("z", NOW - 9)  # 4 tracked before: sweep
        assert set(limiter._seen) == {"x", "y", "z"}
    finally:
        udp.MAX_TRACKED = original


def test_no_sweep_before_the_table_is_full() -> None:
    limiter = RateLimiter(1)
    assert limiter.allow("a", NOW)
    assert limiter.allow("b", NOW + 1)
    assert set(limiter._seen) == {"a", "b"}  # an old entry costs nothing until then


def test_the_real_table_size_is_swept_and_stays_swept() -> None:
    limiter = RateLimiter(1)
    for i in range(udp.MAX_TRACKED + 1):  # all in one second: none can be dropped
        limiter.allow(str(i), NOW)
    assert len(limiter._seen) == udp.MAX_TRACKED + 1
    assert limiter.allow("next", NOW + 1)  # over the bound, a later second: swept
    assert set(limiter._seen) == {"next"}
