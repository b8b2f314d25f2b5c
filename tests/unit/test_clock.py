"""The kernel clock state without the kernel: Watch with an injected reader, describe()."""

from __future__ import annotations

import ctypes
import errno
import struct
from typing import Any

import pytest

from daytime_sd import clock
from daytime_sd.clock import (
    STA_INS,
    STA_PLL,
    STA_UNSYNC,
    TIME_ERROR,
    TIME_INS,
    TIME_OK,
    KernelClock,
    Watch,
)

SYNCED = KernelClock(TIME_OK, STA_PLL, 12_345, 800)
UNSYNCED = KernelClock(TIME_ERROR, STA_UNSYNC, 16_000_000, 16_000_000)


class Reader:
    """Hands out the queued results in order (an OSError is raised); counts the reads."""

    def __init__(self, *results: KernelClock | OSError) -> None:
        self.results = list(results)
        self.reads = 0

    def __call__(self) -> KernelClock:
        self.reads += 1
        result = self.results[min(self.reads, len(self.results)) - 1]
        if isinstance(result, OSError):
            raise result
        return result


def test_synchronized_follows_maxerror_not_the_flag() -> None:
    assert SYNCED.synchronized
    assert not UNSYNCED.synchronized
    assert not KernelClock(TIME_OK, STA_PLL, 16_000_000, 0).synchronized
    # chronyd without rtcsync: STA_UNSYNC and TIME_ERROR on a disciplined clock.
    assert KernelClock(TIME_ERROR, STA_UNSYNC | STA_PLL, 40_000, 100).synchronized
    assert KernelClock(TIME_INS, STA_PLL | STA_INS, 1_000, 10).leap == 1
    assert SYNCED.leap == 0


def test_describe() -> None:
    assert clock.describe(SYNCED) == "clock synchronized (±13 ms)"  # rounded up: a bound
    assert clock.describe(KernelClock(TIME_OK, 0, 2_000, 0)) == "clock synchronized (±2 ms)"
    assert clock.describe(KernelClock(TIME_OK, 0, 0, 0)) == "clock synchronized (±0 ms)"
    assert clock.describe(UNSYNCED) == "clock NOT synchronized"
    assert clock.describe(None).startswith("clock state unknown")


def test_first_poll_reads_and_reports() -> None:
    reader = Reader(UNSYNCED)
    watch = Watch(reader)
    assert watch.clock is None and not watch.synchronized
    assert watch.poll(1000.0) is True
    assert reader.reads == 1
    assert watch.clock == UNSYNCED and not watch.synchronized
    assert watch.message() == (
        4,
        "clock NOT synchronized (maxerror 16000 ms, TIME_ERROR)",
    )


def test_reads_at_most_once_per_interval() -> None:
    reader = Reader(SYNCED)
    watch = Watch(reader)
    assert watch.poll(1000.0)
    for now in (1000.0, 1000.2, 1000.999):
        assert watch.poll(now) is False
    assert reader.reads == 1
    assert watch.poll(1001.0) is False  # read again, same state: nothing to log
    assert reader.reads == 2
    assert watch.poll(1001.5) is False
    assert watch.poll(1005.0) is False
    assert reader.reads == 3
    assert watch.message() == (6, "clock synchronized (±13 ms)")


def test_reports_each_change_once() -> None:
    reader = Reader(SYNCED, SYNCED, UNSYNCED, UNSYNCED, SYNCED)
    watch = Watch(reader)
    changes = [watch.poll(2000.0 + second) for second in range(5)]
    assert changes == [True, False, True, False, True]
    assert watch.synchronized


def test_unreadable_clock_is_none_and_reported() -> None:
    denied = OSError(errno.EPERM, "adjtimex: Operation not permitted")
    reader = Reader(SYNCED, denied, denied, SYNCED)
    watch = Watch(reader)
    assert watch.poll(10.0)
    assert watch.poll(11.0) is True  # synchronized -> unknown
    assert watch.clock is None and watch.error is denied and not watch.synchronized
    priority, text = watch.message()
    assert priority == 4 and "Operation not permitted" in text
    assert watch.poll(12.0) is False  # still unknown: one line per episode
    assert watch.poll(13.0) is True and watch.error is None and watch.synchronized


def test_a_clock_stepped_back_does_not_stop_the_reads() -> None:
    reader = Reader(SYNCED)
    watch = Watch(reader)
    watch.poll(5000.0)
    watch.poll(4000.0)  # the wall clock was stepped back by 1000 s
    assert reader.reads == 2
    watch.poll(4000.5)
    assert reader.reads == 2


def test_interval_is_configurable() -> None:
    reader = Reader(SYNCED)
    watch = Watch(reader, interval=10.0)
    for now in range(100, 121):
        watch.poll(float(now))
    assert reader.reads == 3  # at 100, 110 and 120


def test_repr_names_the_state() -> None:
    assert "TIME_ERROR" in repr(UNSYNCED) and "0x40" in repr(UNSYNCED)


@pytest.mark.parametrize("other", [None, 0, (TIME_OK, STA_PLL, 12_345, 800)])
def test_equality_is_by_value_and_typed(other: object) -> None:
    assert KernelClock(TIME_OK, STA_PLL, 12_345, 800) == SYNCED
    assert other != SYNCED
    assert SYNCED.__eq__(other) is NotImplemented  # a tuple of the same values is not a clock


# --- the binding, with a stand-in for libc's adjtimex ---------------------------------------


class Timex(ctypes.Structure):
    """struct timex as <linux/timex.h> declares it: the reference for clock.timex_layout."""

    _fields_ = (
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long), ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long), ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long), ("shift", ctypes.c_int), ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long), ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int), ("reserved", ctypes.c_int * 11),
    )  # fmt: skip


def test_struct_timex_is_the_kernels_layout() -> None:
    """The offsets clock.py reads at are the C compiler's (ctypes.Structure applies the same
    alignment), and its buffer holds the whole struct: 208 bytes on LP64."""
    at = clock.timex_layout(ctypes.sizeof(ctypes.c_long))
    for name in ("modes", "maxerror", "esterror", "status"):
        assert at[name] == getattr(Timex, name).offset, name
    assert at["size"] >= ctypes.sizeof(Timex)
    if ctypes.sizeof(ctypes.c_long) == 8:
        assert ctypes.sizeof(Timex) == 208
        assert (at["maxerror"], at["status"]) == (24, 40)


def test_binding_reads_the_fields_the_kernel_fills() -> None:
    seen: list[int] = []

    def fake_adjtimex(pointer: Any) -> int:  # what ctypes.byref() returns
        raw = ctypes.cast(pointer, ctypes.POINTER(ctypes.c_char * 208)).contents
        seen.append(struct.unpack_from("=I", raw)[0])  # the modes the caller passed
        struct.pack_into("=qq", raw, 24, 1_234, 567)  # maxerror, esterror
        struct.pack_into("=i", raw, 40, STA_UNSYNC | STA_PLL)  # status
        return TIME_ERROR

    result = clock.bind(fake_adjtimex)()
    assert seen == [0]  # modes 0: a read, never a write
    assert result == KernelClock(TIME_ERROR, STA_UNSYNC | STA_PLL, 1_234, 567)


def test_binding_raises_oserror_with_the_errno() -> None:
    def denied(_pointer: object) -> int:
        ctypes.set_errno(errno.EPERM)
        return -1

    with pytest.raises(OSError) as info:
        clock.bind(denied)()
    assert info.value.errno == errno.EPERM
