# SPDX-License-Identifier: MIT
"""Issue 10: a bookworm system with daytime-sd, upgraded to trixie as the release notes say
(sources to trixie, `apt full-upgrade`), keeps daytime.socket enabled and answering.

Runs once, in a booted bookworm container, in every run that proves both bookworm and trixie
(`make test`; see conftest.py).  It downloads trixie's packages (the cached rootfs's build tools
are purged first, so what is upgraded is what a server has).  The container keeps its private
network; only the apt-get calls run in the host's network namespace, to reach the host's Debian
mirror.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .rig import CT_PATH, CTIME_LINE, TOOL_PACKAGES, Container, find_mirror


def apt(ct: Container, *args: str, timeout: float = 1200) -> str:
    """apt-get in the container's file system, through the host's network namespace."""
    cmd = [
        "nsenter",
        f"--target={ct.leader}",
        "--mount",
        "--uts",
        "--ipc",
        "--pid",
        "--",
        "env",
        "-i",
        f"PATH={CT_PATH}",
        "LANG=C.UTF-8",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "-y",
        "-q",
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"apt-get {args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def bookworm(rootfses: dict[str, Path], dist: Path) -> Iterator[Container]:
    with Container(rootfses["bookworm"], binds_ro={dist: "/srv/debs"}) as ct:
        yield ct


def serving(ct: Container) -> None:
    assert ct.systemctl("is-enabled", "daytime.socket") == "enabled"
    assert ct.systemctl("is-active", "daytime.socket") == "active"
    for host in ("127.0.0.1", "::1"):
        assert CTIME_LINE.fullmatch(ct.query("tcp", host, timeout=20))


def test_bookworm_to_trixie_keeps_the_socket(bookworm: Container, dist: Path) -> None:
    ct = bookworm
    (deb,) = dist.glob("daytime-sd_*_all.deb")
    ct.run(["apt-get", "install", "-y", f"/srv/debs/{deb.name}"], timeout=300)
    serving(ct)
    # The build and test tools of the cached rootfs are not part of the system under test;
    # dropping them keeps the upgrade to what an admin's server would download.
    ct.run(["apt-get", "purge", "-y", "--autoremove", *TOOL_PACKAGES], timeout=600)
    serving(ct)

    ct.write_file("/etc/apt/sources.list", f"deb {find_mirror('trixie')} trixie main\n")
    apt(ct, "update")
    apt(ct, "full-upgrade")
    # apt's systemd upgrade re-executes PID 1; make sure it runs the new one, as after a reboot.
    ct.systemctl("daemon-reexec")
    version = ct.run(["systemctl", "--version"]).stdout.split()[1]
    assert int(version) >= 257, f"still systemd {version} after the upgrade"
    os_release = ct.run(["cat", "/etc/os-release"]).stdout
    assert "VERSION_CODENAME=trixie" in os_release, os_release
    assert ct.run(["dpkg-query", "-W", "-f=${Status}", "daytime-sd"]).stdout == (
        "install ok installed"
    )
    serving(ct)
    assert ct.systemctl("is-enabled", "daytime-udp.socket", check=False) == "disabled"
