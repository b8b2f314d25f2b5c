# SPDX-License-Identifier: MIT
"""The event loop on its own: real epoll, real pipes, no service around it."""

from __future__ import annotations

import os
import time

from daytime_sd.loop import FOREVER, Loop


def test_with_nothing_due_it_blocks_until_a_handler_runs() -> None:
    # Every timer answering FOREVER means "wake me for events only"; epoll is then given
    # -1 (block), not infinity, which it refuses with OverflowError.
    loop = Loop()
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    seen: list[bytes] = []

    def readable(fd: int) -> None:
        seen.append(os.read(fd, 16))
        loop.stop()

    def writes_once(_now: float) -> float:
        if not seen:
            os.write(w, b"x")  # readable before the next poll: the block ends at once
        return FOREVER

    try:
        loop.add(r, readable)
        loop.timers.append(writes_once)
        loop.run()
        assert seen == [b"x"]
    finally:
        loop.close()
        os.close(r)
        os.close(w)


def test_until_ends_the_run_without_events() -> None:
    loop = Loop()
    calls: list[float] = []

    def idle(now: float) -> float:
        calls.append(now)
        return FOREVER

    try:
        loop.timers.append(idle)
        start = time.monotonic()
        loop.run(until=start + 0.05)
        assert time.monotonic() - start >= 0.05
        assert calls  # the timers ran before the loop slept
        assert not loop.running
    finally:
        loop.close()
