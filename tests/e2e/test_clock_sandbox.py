# SPDX-License-Identifier: MIT
"""Issue 21.5: in a container whose sandbox refuses the clock read (systemd-nspawn's default
filter without CAP_SYS_TIME, as Docker's default profile does), the service says so once per
process at notice priority, STATUS= says the state is unknown and why, and nothing of ours
reaches ``journalctl -p warning``: the admin of the service cannot change the container."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .rig import CTIME_LINE, REPO_ROOT, Container

REFUSED = "clock state unknown: adjtimex refused by the sandbox (Operation not permitted)"
NIST = re.compile(r"^\d{5} \d\d-\d\d-\d\d \d\d:\d\d:\d\d \d\d [012] 2   0\.0 UTC\(HOST\) \*\r\n$")


@pytest.fixture(scope="module")
def sandboxed(rootfs: Path) -> Iterator[Container]:
    t0 = time.monotonic()
    with Container(rootfs, clock_readable=False) as ct:
        print(f"\n[rig] {ct.name} booted in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        ct.install_from_tree(REPO_ROOT)
        yield ct


def ours(ct: Container, priority: str) -> str:
    """Our journal entries at ``priority`` or above, since the container booted.

    The whole journal, not Container.journal's since a cursor: bookworm's journalctl 252,
    given a cursor and a match, misses the entries of a service restarted with DynamicUser=
    (they go to another journal file).  This container runs this test alone.
    """
    cmd = ["journalctl", "--no-pager", "-o", "cat", "-t", "daytime-sd", "-p", priority]
    return ct.run(cmd).stdout


def test_a_refused_clock_read_is_a_notice_once_per_process(sandboxed: Container) -> None:
    ct = sandboxed
    ct.write_file(
        "/etc/systemd/system/daytime.service.d/50-nist.conf",
        "[Service]\nExecStart=\nExecStart=/usr/sbin/daytime-sd --idle-timeout 0 --format nist\n",
    )
    ct.systemctl("daemon-reload")
    ct.systemctl("enable", "--now", "daytime.socket")
    for _ in range(3):  # the loop reads the clock once a second: three reads at least
        assert NIST.match(ct.query("tcp", "127.0.0.1")), "H must be 2 while unknown"
        time.sleep(1.1)
    ct.wait_for(
        "STATUS= saying why the state is unknown",
        lambda: REFUSED in ct.systemctl("show", "-p", "StatusText", "daytime.service"),
    )
    ct.systemctl("restart", "daytime.service")  # a second process says it once too
    assert NIST.match(ct.query("tcp", "127.0.0.1"))
    time.sleep(1.5)
    ct.wait_for(
        "the second process's notice in the journal",
        lambda: ours(ct, "notice").count(REFUSED) >= 2,
    )
    ct.systemctl("stop", "daytime.socket", "daytime.service")
    notices = ours(ct, "notice")
    assert notices.count(REFUSED) == 2, notices  # once per process, two processes
    warnings = ours(ct, "warning")
    assert warnings.strip() == "", warnings
    # The per-connection path reads the clock only for NIST and --require-sync, and says
    # nothing about it per connection.
    ct.run(["rm", "/etc/systemd/system/daytime.service.d/50-nist.conf"])
    ct.write_file("/etc/systemd/system/daytime.socket.d/50-accept.conf", "[Socket]\nAccept=yes\n")
    ct.systemctl("daemon-reload")
    ct.systemctl("start", "daytime.socket")
    for _ in range(3):
        assert CTIME_LINE.fullmatch(ct.query("tcp", "127.0.0.1"))
    ct.systemctl("stop", "daytime.socket")
    everything = ours(ct, "warning")
    assert everything.strip() == "", everything
