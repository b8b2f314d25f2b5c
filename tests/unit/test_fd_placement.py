# SPDX-License-Identifier: MIT
"""The wake-up pipe is placed above the descriptors a forked child closes (loop.fd_from)."""

from __future__ import annotations

import fcntl
import os

import pytest

from daytime_sd.loop import fd_from as _fd_from


def test_a_descriptor_in_a_hole_below_is_moved_up_and_keeps_its_flags() -> None:
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    spacer = [os.dup(w) for _ in range(3)]
    os.close(spacer[0])  # a hole below the others, as a closed inherited fd leaves
    try:
        hole_r, hole_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        assert hole_r == spacer[0]  # the kernel hands out the lowest free number
        lowest = max(spacer) + 1
        moved = _fd_from(hole_r, lowest)
        assert moved >= lowest
        assert fcntl.fcntl(moved, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert os.get_blocking(moved) is False
        with pytest.raises(OSError):  # the old number is closed
            os.fstat(hole_r)
        os.write(hole_w, b"x")
        assert os.read(moved, 1) == b"x"  # the same pipe
        os.close(moved)
        os.close(hole_w)
    finally:
        for fd in (r, w, *spacer[1:]):
            os.close(fd)


def test_a_descriptor_already_above_stays_where_it_is() -> None:
    r, w = os.pipe()
    try:
        assert _fd_from(r, r) == r
        assert _fd_from(w, 3) == w
    finally:
        os.close(r)
        os.close(w)
