# SPDX-License-Identifier: MIT
"""The kernel clock state without the kernel: Watch with an injected reader, describe(), and
ClockSync, what the service does with the state (its log lines the real ones, on stderr; the real
clock in a real service is test_clock_truth's)."""

from __future__ import annotations

import ctypes
import errno
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from daytime_sd import clock, config, log, nist
from daytime_sd.clock import (
    STA_DEL,
    STA_INS,
    STA_PLL,
    STA_UNSYNC,
    TIME_ERROR,
    TIME_INS,
    TIME_OK,
    WITHHELD,
    ClockSync,
    KernelClock,
    Watch,
    describe,
)
from daytime_sd.protocol import render

SYNCED = KernelClock(TIME_OK, STA_PLL, 12_345, 800)
UNSYNCED = KernelClock(TIME_ERROR, STA_UNSYNC, 16_000_000, 16_000_000)


class Reader:
    """Hands out the queued results in order (an exception is raised); counts the reads."""

    def __init__(self, *results: KernelClock | Exception) -> None:
        self.results = list(results)
        self.reads = 0

    def __call__(self) -> KernelClock:
        self.reads += 1
        result = self.results[min(self.reads, len(self.results)) - 1]
        if isinstance(result, Exception):
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
    # A sandbox's refusal is notice, not warning (issue 21.5): nothing the admin can change.
    assert priority == 5 and "refused by the sandbox (Operation not permitted)" in text
    assert watch.poll(12.0) is False  # still unknown: one line per episode
    assert watch.poll(13.0) is True and watch.error is None and watch.synchronized


@pytest.mark.parametrize(
    ("failure", "words"),
    [
        (OSError(errno.EIO, "adjtimex: Input/output error"), "adjtimex failed (Input/output"),
        # The binding breaking on a newer Python, or libffi missing (issue 21.4).
        (TypeError("an API changed shape"), "TypeError: an API changed shape"),
        (ImportError("No module named '_ctypes'"), "ImportError: No module named"),
        (RuntimeError("anything"), "RuntimeError: anything"),
    ],
)
def test_any_failure_of_the_read_is_unknown_and_warned_once(failure: Exception, words: str) -> None:
    watch = Watch(Reader(failure, failure, SYNCED))
    assert watch.poll(10.0) is True
    assert watch.clock is None and watch.error is failure and not watch.synchronized
    priority, text = watch.message()
    assert priority == 4 and text.startswith("clock state unknown: ") and words in text
    assert describe(None, failure) == text  # STATUS= says the same
    assert watch.poll(11.0) is False  # logged once, not once a read
    assert watch.poll(12.0) is True and watch.synchronized


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


def test_struct_timex_is_the_kernels_layout() -> None:
    """The offsets the kernel writes at on LP64 (x86_64, arm64, ...): 208 bytes in all."""
    if ctypes.sizeof(ctypes.c_long) != 8:
        pytest.skip("the figures below are LP64's")
    assert ctypes.sizeof(clock.Timex) == 208
    offsets = {
        name: getattr(clock.Timex, name).offset
        for name in ("modes", "maxerror", "esterror", "status", "tai")
    }
    assert offsets == {"modes": 0, "maxerror": 24, "esterror": 32, "status": 40, "tai": 160}


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


# --- the kernel's numbers, the flags and the names ----------------------------------------

# <linux/timex.h>, for machines without linux-libc-dev.
KERNEL_CONSTANTS = {
    "TIME_OK": 0, "TIME_INS": 1, "TIME_DEL": 2, "TIME_OOP": 3, "TIME_WAIT": 4, "TIME_ERROR": 5,
    "STA_PLL": 0x0001, "STA_INS": 0x0010, "STA_DEL": 0x0020, "STA_UNSYNC": 0x0040,
}  # fmt: skip
TIMEX_H = Path("/usr/include/linux/timex.h")


def test_constants_are_the_kernels() -> None:
    if TIMEX_H.is_file():
        defines = r"^#define\s+(\w+)\s+(0x[0-9a-fA-F]+|\d+)\b"
        header = dict(re.findall(defines, TIMEX_H.read_text(), re.M))
        assert {name: int(header[name], 0) for name in KERNEL_CONSTANTS} == KERNEL_CONSTANTS
    assert {name: getattr(clock, name) for name in KERNEL_CONSTANTS} == KERNEL_CONSTANTS
    names = clock.STATE_NAMES
    assert [names[getattr(clock, name)] for name in names] == list(names)


def test_synchronized_below_16_s_only() -> None:
    assert KernelClock(TIME_OK, STA_PLL, 15_999_999, 0).synchronized
    assert not KernelClock(TIME_OK, STA_PLL, 16_000_000, 0).synchronized
    # Set by a daemon above the kernel's clamp (until the kernel's next second): not either.
    assert not KernelClock(TIME_OK, STA_PLL, 20_000_000, 0).synchronized


@pytest.mark.parametrize(
    ("status", "leap"),
    [
        (0, 0),
        (STA_PLL, 0),
        (STA_UNSYNC, 0),
        (STA_UNSYNC | STA_PLL, 0),
        (STA_INS, 1),
        (STA_INS | STA_UNSYNC | STA_PLL, 1),
        (STA_DEL, -1),
        (STA_DEL | STA_UNSYNC | STA_PLL, -1),
    ],
)
def test_leap_follows_the_ins_and_del_bits(status: int, leap: int) -> None:
    assert KernelClock(TIME_OK, status, 1_000, 0).leap == leap


def test_different_clocks_are_unequal_either_way() -> None:
    bigger = KernelClock(TIME_OK, STA_PLL, 12_346, 800)
    pairs = [(bigger, SYNCED), (SYNCED, bigger)]
    assert [a == b for a, b in pairs] == [False, False]
    assert [a != b for a, b in pairs] == [True, True]
    assert KernelClock(TIME_INS, STA_PLL, 12_345, 800) != SYNCED


@pytest.mark.parametrize(
    ("state", "name"),
    [(TIME_OK, "TIME_OK"), (TIME_ERROR, "TIME_ERROR"), (-1, "-1"), (6, "6"), (7, "7")],
)
def test_state_names_known_and_unknown(state: int, name: str) -> None:
    reading = KernelClock(state, 0, 16_000_000, 0)
    assert repr(reading).startswith(f"KernelClock({name}, ")
    watch = Watch(Reader(reading))
    watch.poll(1.0)
    assert watch.state_name == name
    assert watch.message() == (4, f"clock NOT synchronized (maxerror 16000 ms, {name})")


def test_describe_rounds_up_to_the_millisecond() -> None:
    assert clock.describe(KernelClock(TIME_OK, 0, 1_001, 0)) == "clock synchronized (±2 ms)"
    assert clock.describe(KernelClock(TIME_OK, 0, 999, 0)) == "clock synchronized (±1 ms)"


def test_a_small_step_back_also_reads_again() -> None:
    reader = Reader(SYNCED)
    watch = Watch(reader)
    watch.poll(5000.0)
    watch.poll(4999.5)  # stepped back by half a second
    assert reader.reads == 2


def test_soon_after_boot() -> None:
    """The loop passes time.monotonic(): seconds since boot, small on a fresh machine."""
    reader = Reader(SYNCED)
    watch = Watch(reader)
    for now in (1.0, 2.5, 3.0, 4.0, 9.25):
        watch.poll(now)
    assert reader.reads == 4  # at 1.0, 2.5, 4.0 and 9.25


def test_message_of_an_unknown_state_without_errno() -> None:
    assert Watch(Reader(SYNCED)).message() == (4, "clock state unknown: not read yet")
    watch = Watch(Reader(OSError("no errno")))
    watch.poll(1.0)
    assert watch.message() == (4, "clock state unknown: adjtimex failed (no errno)")
    watch = Watch(Reader(OSError()))
    watch.poll(1.0)
    assert watch.message() == (4, "clock state unknown: adjtimex failed")


def test_binding_reads_each_field_whole_and_signed() -> None:
    """Every byte of the struct holds something (other fields, the kernel's padding): each
    field is read at its own offset, at its own width, as the signed type it is."""

    def busy_adjtimex(pointer: Any) -> int:
        raw = ctypes.cast(pointer, ctypes.POINTER(ctypes.c_char * 208)).contents
        ctypes.memset(raw, 0x5A, 208)
        struct.pack_into("=I", raw, 0, 0)  # modes: what the caller passed stays 0
        struct.pack_into("=qq", raw, 24, 2**40 + 7, -3)  # maxerror beyond 32 bits, esterror < 0
        struct.pack_into("=i", raw, 40, 0x12345678)  # status, an int's whole width
        return TIME_OK

    if ctypes.sizeof(ctypes.c_long) != 8:
        pytest.skip("the stand-in writes the 64-bit struct timex")
    assert clock.bind(busy_adjtimex)() == KernelClock(TIME_OK, 0x12345678, 2**40 + 7, -3)


# -- ClockSync ------------------------------------------------------------------------------

SECOND = 1_700_000_000  # 2023-11-14 22:13:20 UTC


Logged = Callable[[], list[str]]


@pytest.fixture
def logged(capsys: pytest.CaptureFixture[str]) -> Logged:
    """The lines logged since the last call: the real log, on stderr."""
    log.setup("info", "stderr")
    return lambda: capsys.readouterr().err.splitlines()


def sync_of(argv: list[str], *results: KernelClock | Exception) -> tuple[ClockSync, Reader]:
    sync = ClockSync(config.parse(argv))
    reader = Reader(*results)
    sync.watch = Watch(reader)
    return sync, reader


@pytest.mark.parametrize(
    ("argv", "needed"),
    [([], False), (["--format", "nist"], True), (["--require-sync"], True),
     (["--utc"], False),
     (["--format", "today %T"], False),  # sorts after "nist": compared for equality
     (["--format", "".join(("ni", "st"))], True)],  # built at run time, as argv is: not interned
)  # fmt: skip
def test_needed_per_connection_for_nist_and_require_sync_only(
    argv: list[str], needed: bool
) -> None:
    assert ClockSync(config.parse(argv)).needed_per_connection is needed


def test_first_poll_logs_the_state_at_start(logged: Logged) -> None:
    sync, reader = sync_of([], SYNCED)
    assert sync.status() == ""  # not read yet: STATUS= says nothing of the clock
    assert sync.poll(100.0) is True
    assert logged() == ["daytime-sd: clock synchronized (±13 ms)"]
    assert sync.status() == "clock synchronized (±13 ms)"
    assert sync.poll(100.5) is False and reader.reads == 1  # at most once a second
    assert sync.poll(101.0) is False and reader.reads == 2  # read, unchanged: nothing logged
    assert logged() == []


def test_one_line_per_change(logged: Logged) -> None:
    sync, _ = sync_of([], SYNCED, UNSYNCED, UNSYNCED, OSError(1, "Operation not permitted"))
    assert [sync.poll(t) for t in (0.0, 1.0, 2.0, 3.0)] == [True, True, False, True]
    lines = logged()
    assert len(lines) == 3
    assert lines[1].startswith("daytime-sd: clock NOT synchronized (maxerror 16000 ms")
    assert "--require-sync" not in lines[1]
    assert lines[2] == (
        "daytime-sd: clock state unknown: adjtimex refused by the sandbox (Operation not permitted)"
    )
    assert sync.status() == lines[2].removeprefix("daytime-sd: ")


def test_require_sync_says_when_it_stops_and_starts_answering(logged: Logged) -> None:
    sync, _ = sync_of(["--require-sync"], SYNCED, UNSYNCED, SYNCED)
    for t in (0.0, 1.0, 2.0):
        assert sync.poll(t) is True
    lines = logged()
    assert lines[0] == "daytime-sd: clock synchronized (±13 ms)"  # the start: not "again"
    assert lines[1].endswith("; --require-sync: no answers until it is")
    assert lines[2] == "daytime-sd: clock synchronized (±13 ms); answering again"


def test_require_sync_unsynchronized_at_start(logged: Logged) -> None:
    sync, _ = sync_of(["--require-sync"], RuntimeError("binding broke"), SYNCED)
    assert sync.poll(0.0) is True
    assert sync.render(SECOND) == WITHHELD  # unknown counts as not synchronized
    assert sync.poll(1.0) is True
    lines = logged()
    assert lines[0] == (
        "daytime-sd: clock state unknown: reading it failed (RuntimeError: binding broke)"
        "; --require-sync: no answers until it is"
    )
    assert lines[1].endswith("; answering again")


def test_a_quiet_poll_reads_but_logs_nothing(logged: Logged) -> None:
    """The per-connection path's read: a line per connection would flood the journal."""
    sync, reader = sync_of(["--require-sync"], UNSYNCED, SYNCED)
    assert sync.poll(0.0, quiet=True) is True
    assert reader.reads == 1 and logged() == []
    assert sync.poll(1.0) is True
    assert logged() == ["daytime-sd: clock synchronized (±13 ms)"]  # no "again": none said


def test_render_withholds_only_under_require_sync_while_unsynchronized() -> None:
    line = render(config.parse([]).format, SECOND, False)
    sync, _ = sync_of(["--require-sync"], UNSYNCED, SYNCED)
    sync.poll(0.0, quiet=True)
    assert sync.render(SECOND) == WITHHELD == b""
    sync.poll(1.0, quiet=True)
    assert sync.render(SECOND) == line
    plain, _ = sync_of([], UNSYNCED)
    plain.poll(0.0, quiet=True)
    assert plain.render(SECOND) == line  # without the flag, the time is always told


def test_render_uses_the_configured_format_and_zone(zone: Callable[[str], None]) -> None:
    zone("AAA-9")  # nine hours east of UTC, a POSIX rule: no tzdata needed
    utc, _ = sync_of(["--utc", "--format", "%Y-%m-%dT%H:%M:%S%z"], SYNCED)
    assert utc.render(SECOND) == b"2023-11-14T22:13:20+0000\r\n"
    local, _ = sync_of(["--format", "%Y-%m-%dT%H:%M:%S%z"], SYNCED)
    assert local.render(SECOND) == b"2023-11-15T07:13:20+0900\r\n"


@pytest.mark.parametrize(("state", "health"), [(SYNCED, b" 0 "), (UNSYNCED, b" 2 ")])
def test_nist_line_carries_the_clock_and_the_label(state: KernelClock, health: bytes) -> None:
    sync, _ = sync_of(["--format", "nist", "--nist-label", "UTC(TEST)"], state)
    sync.poll(0.0, quiet=True)
    line = sync.render(SECOND)
    assert line == nist.render(SECOND, state, sync.leaps.at(SECOND), "UTC(TEST)")
    assert line.startswith(b"60262 23-11-14 22:13:20 ")
    assert line.endswith(b" UTC(TEST) *\r\n")
    assert health in line[24:31]  # TT L H: the health digit from the kernel's state


def test_nist_line_before_the_first_read_is_unhealthy() -> None:
    sync, reader = sync_of(["--format", "nist"], SYNCED)
    line = sync.render(SECOND)
    assert reader.reads == 0
    assert line == nist.render(SECOND, None, sync.leaps.at(SECOND), sync.label)


def test_nist_polls_see_a_new_leap_list_and_sighup_reads_it_again(tmp_path: Path) -> None:
    """tzdata upgraded under a running service: the next once-a-second poll sees the file."""
    path = tmp_path / "leap-seconds.list"
    path.write_text("#@\t4000000000\n2272060800\t10\n")
    sync, _ = sync_of(["--format", "nist"], SYNCED)
    sync.leaps = nist.LeapList(str(path))
    sync.poll(0.0, quiet=True)
    first = sync.leaps.table
    assert first is not None
    new = tmp_path / "new"
    new.write_text("#@\t4000000000\n2272060800\t10\n3692217600\t37\n")
    new.replace(path)  # as dpkg installs a file: another inode under the same name
    sync.poll(1.0, quiet=True)
    second = sync.leaps.table
    assert second is not None and second.changes != first.changes
    sync.poll(2.0, quiet=True)
    assert sync.leaps.table is second  # unchanged file: not read again
    sync.reload()
    sync.poll(3.0, quiet=True)
    again = sync.leaps.table
    assert again is not second and again is not None and again.changes == second.changes


def test_only_nist_reads_the_leap_list(tmp_path: Path) -> None:
    path = tmp_path / "leap-seconds.list"
    path.write_text("#@\t4000000000\n2272060800\t10\n")
    sync, _ = sync_of(["--require-sync"], SYNCED)
    sync.leaps = nist.LeapList(str(path))
    sync.poll(0.0, quiet=True)
    assert sync.leaps.table is None
