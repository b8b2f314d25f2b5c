# SPDX-License-Identifier: MIT
"""Issue 6 soak: a fixed connection rate for DAYTIME_SOAK_SECONDS (10 in ``make test``, 60 in
``make soak``): no error at all, and the service's descriptors, memory and children are as
flat at the end as at the start.

Rates: 2,000 connections/s in-process (Accept=no), as the issue asks.  Fork mode forks a
Python interpreter per connection; on the 2-core test machine it tops out near 900-1,400/s
with the load client sharing the cores, so its soak runs at 500/s: half that capacity, so
that the test measures leaks and not saturation (a saturated service queues connections,
which is the backlog's job, not a fault).
"""

from __future__ import annotations

import os
import time

import pytest

from .load import MODES, Background, draining, rss_kib, run_load, serving
from .support import children, open_fds

SECONDS = float(os.environ.get("DAYTIME_SOAK_SECONDS", "10"))
RATES = {"in-process": 2000, "fork": 500}
RSS_SLACK_KIB = 2048  # allocator noise; a leak of 100 bytes a connection is 2 MB per 20,000


def settled_fds(pid: int, timeout: float = 10.0) -> int:
    """The fd count once the last connections have stopped lingering."""
    deadline = time.monotonic() + timeout
    last = open_fds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = open_fds(pid)
        if now == last and not children(pid):
            return now
        last = now
    return last


@pytest.mark.parametrize("mode", MODES)
def test_soak_fixed_rate_no_errors_and_flat_resources(mode: str) -> None:
    rate = RATES[mode]
    with serving(mode) as (svc, port), draining(svc):
        warm = run_load("127.0.0.1", port, rate=rate, count=rate)  # 1 s: imports, allocator
        assert warm.errors == 0, warm
        fds_before = settled_fds(svc.pid)
        rss_before = rss_kib(svc.pid)
        samples: list[tuple[float, int, int, int]] = []  # (t, fds, rss KiB, children)
        with Background("127.0.0.1", port, rate=rate, duration=SECONDS, timeout=15) as load:
            started = time.monotonic()
            while not load.stopped.wait(0.5):
                samples.append(
                    (
                        time.monotonic() - started,
                        open_fds(svc.pid),
                        rss_kib(svc.pid),
                        len(children(svc.pid)),
                    )
                )
            result = load.result()
        assert result.errors == 0 and result.ok == result.started, result
        assert result.ok >= rate * SECONDS * 0.99, result
        assert result.offered_rate >= rate * 0.8, f"offered {result.offered_rate:.0f}/s"
        assert svc.proc.poll() is None

        # Flat during the run: the last quarter is no higher than the first quarter.
        quarter = max(1, len(samples) // 4)
        first, last = samples[:quarter], samples[-quarter:]
        for index, name, slack in ((1, "fds", 64), (2, "rss KiB", RSS_SLACK_KIB), (3, "kids", 64)):
            early = max(s[index] for s in first)
            late = max(s[index] for s in last)
            assert late <= early + slack, (name, early, late, samples)
        # And flat from start to end, once the last connections are done.
        assert settled_fds(svc.pid) == fds_before, samples
        assert children(svc.pid) == []
        rss_after = rss_kib(svc.pid)
        assert rss_after <= rss_before + RSS_SLACK_KIB, (rss_before, rss_after, samples)
    assert "Traceback" not in svc.stderr
