# SPDX-License-Identifier: MIT
"""nist.LeapList: tzdata's leap-second list read once, again only when it changes (issue 21.6)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daytime_sd import log, nist

NTP = nist.NTP_UNIX_OFFSET
EXPIRED_AT = 1_782_604_800  # 2026-06-28 00:00 UTC, when this machine's list ran out
NOW = 1_795_500_000  # 2026-11-25, after it


def list_text(expiry: int) -> str:
    return f"#@\t{expiry + NTP}\n{2272060800}\t10\n{3692217600}\t37\n"


class Reads:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = nist.read_leap_table

        def counted(path: str = nist.LEAP_SECONDS_LIST) -> nist.LeapTable:
            self.count += 1
            return real(path)

        monkeypatch.setattr(nist, "read_leap_table", counted)


@pytest.fixture
def said(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    lines: list[tuple[int, str]] = []
    monkeypatch.setattr(
        log, "_log", lambda priority, message, fields: lines.append((priority, message))
    )
    return lines


def test_an_expired_list_is_read_once_and_said_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, said: list[tuple[int, str]]
) -> None:
    path = tmp_path / "leap-seconds.list"
    path.write_text(list_text(EXPIRED_AT))
    reads = Reads(monkeypatch)
    leaps = nist.LeapList(str(path))
    for second in range(5):  # five rendered seconds, each after a once-a-second check
        leaps.refresh()
        table = leaps.at(NOW + second)
        assert table is not None and not table.valid_at(NOW + second)
    assert reads.count == 1
    assert said == [
        (5, f"{path} expired on 2026-06-28: NIST's leap indicator now comes from the kernel "
            "alone; upgrade tzdata for a current list")
    ]  # fmt: skip


def test_a_changed_file_is_read_again_and_a_current_one_is_not_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, said: list[tuple[int, str]]
) -> None:
    path = tmp_path / "leap-seconds.list"
    path.write_text(list_text(EXPIRED_AT))
    reads = Reads(monkeypatch)
    leaps = nist.LeapList(str(path))
    leaps.at(NOW)
    # tzdata upgraded: a new file in its place (dpkg renames one over the other).
    new = tmp_path / "new"
    new.write_text(list_text(NOW + 86400 * 180))
    os.replace(new, path)
    leaps.refresh()
    assert reads.count == 2
    table = leaps.at(NOW)
    assert table is not None and table.valid_at(NOW)
    leaps.refresh()
    leaps.at(NOW + 1)
    assert reads.count == 2 and len(said) == 1  # the expiry of the old one, once


def test_reload_reads_again_and_an_unreadable_list_is_said_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, said: list[tuple[int, str]]
) -> None:
    path = tmp_path / "leap-seconds.list"
    reads = Reads(monkeypatch)
    leaps = nist.LeapList(str(path))
    for second in range(3):
        leaps.refresh()
        assert leaps.at(NOW + second) is None
    assert reads.count == 1 and len(said) == 1 and said[0][0] == 4
    path.write_text(list_text(NOW + 86400))
    leaps.refresh()  # it appeared
    assert reads.count == 2 and leaps.at(NOW) is not None
    leaps.reload()  # SIGHUP
    leaps.at(NOW)
    assert reads.count == 3 and len(said) == 1
