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
