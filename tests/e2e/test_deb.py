# SPDX-License-Identifier: MIT
"""Issue 4 in each booted release: the user's path through apt (the autopkgtest is in
test_autopkgtest.py).

One container for the module; the tests are the steps of one scenario and run in file order:
install the built .deb with apt-get (dependencies from Debian only), enable the socket, query
port 13 on 127.0.0.1 and ::1, reinstall (the upgrade path of the maintainer scripts), read the
man page, `apt-get remove` (port closed), `apt-get purge` (no file of the package left).

The container has a private network (only `lo`), so port 13 below is the container's.  The
tools the checks need inside (man-db) are in the cached rootfs
(rig.TOOL_PACKAGES), so nothing is downloaded.  The .deb is the one built on this host: one
package for every release.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .rig import CTIME_LINE, REPO_ROOT, Container, listening

UNITS = ("daytime.socket", "daytime.service", "daytime-udp.socket", "daytime-udp.service")

# What may differ between the file list before installing and after purging: the package
# manager's own records and logs: the dpkg database and log, apt's state, caches and logs, and
# debconf's cache, where apt's dpkg-preconfigure hook extracts templates on every install.
BOOKKEEPING = re.compile(
    r"^/var/(?:lib/dpkg/|lib/apt/|cache/apt/|cache/debconf/|log/dpkg\.log|log/apt/)"
)


@dataclass
class Scenario:
    ct: Container
    deb_host: Path  # the built .deb on the host (bound into the container)
    deb: str  # its path inside the container
    files_before: set[str] = field(default_factory=set)
    steps: list[str] = field(default_factory=list)


def copy_source_tree(dst: Path) -> None:
    """The project's files as a fresh clone has them (tracked + untracked, not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout
    for name in sorted({n for n in listed.decode().split("\0") if n}):
        source = REPO_ROOT / name
        if os.path.lexists(source):
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dst / name, follow_symlinks=False)


def settle(ct: Container) -> None:
    """Let man-db create its caches now, so they are not mistaken for files of the package."""
    ct.run(["mandb", "--quiet"], timeout=300)


def file_list(ct: Container) -> set[str]:
    """Every path on the container's root file system, /proc, /sys, /run, /tmp etc. excluded."""
    out = ct.run(["find", "/", "-xdev", "-print0"], timeout=120).stdout
    return {p for p in out.split("\0") if p}


def query(ct: Container, host: str) -> str:
    return ct.query("tcp", host, 13, timeout=20)


@pytest.fixture(scope="module")
def scenario(rootfs: Path, dist: Path) -> Iterator[Scenario]:
    (deb,) = dist.glob("daytime-sd_*_all.deb")
    binds = {dist: "/srv/debs"}
    with Container(rootfs, binds_ro=binds) as ct:
        settle(ct)
        yield Scenario(ct=ct, deb_host=deb, deb=f"/srv/debs/{deb.name}")
    leftovers = [str(cg) for cg in ct.cgroups if cg.exists()]
    assert not leftovers, f"rig left cgroup directories behind: {leftovers}"


@pytest.fixture
def sc(scenario: Scenario, request: pytest.FixtureRequest) -> Scenario:
    """The scenario, asserting that the steps before this test ran and passed."""
    order = [
        "test_apt_install",
        "test_enable_and_query",
        "test_upgrade_restarts_and_keeps_serving",
        "test_man_page_renders",
        "test_remove_closes_port",
        "test_purge_leaves_nothing",
    ]
    name = request.node.name
    if name in order:
        done = order[: order.index(name)]
        assert scenario.steps == done, f"earlier steps failed or did not run: {scenario.steps}"
    return scenario


def test_apt_install(sc: Scenario) -> None:
    ct = sc.ct
    sc.files_before = file_list(ct)
    proc = ct.install_deb(sc.deb_host)
    print(proc.stdout, proc.stderr)
    # Nothing else to download: every dependency is a Debian package already in the rootfs.
    assert re.search(r"^0 upgraded, 1 newly installed, 0 to remove", proc.stdout, re.M), proc.stdout
    status = ct.run(["dpkg-query", "-W", "-f=${Status} ${Version}", "daytime-sd"]).stdout
    assert status.startswith("install ok installed ")
    # Debian convention: the postinst enables and starts the socket (and nothing else).
    assert ct.systemctl("is-enabled", "daytime.socket") == "enabled"
    assert ct.systemctl("is-active", "daytime.socket") == "active"
    assert ct.systemctl("is-enabled", "daytime-udp.socket", check=False) == "disabled"
    assert ct.systemctl("is-active", "daytime-udp.socket", check=False) == "inactive"
    assert ct.systemctl("is-active", "daytime.service", check=False) == "inactive"
    assert not listening(ct, 13, "udp")
    version = ct.run(["/usr/sbin/daytime-sd", "--version"]).stdout
    assert version == f"daytime-sd {status.split()[-1]}\n"
    sc.steps.append("test_apt_install")


def test_enable_and_query(sc: Scenario) -> None:
    ct = sc.ct
    ct.systemctl("enable", "--now", "daytime.socket")
    for host in ("127.0.0.1", "::1"):
        data = query(ct, host)
        assert CTIME_LINE.fullmatch(data), f"[{host}]:13 answered {data!r}"
    # Accept=no: the first connection started the service, which keeps the listening socket.
    assert ct.systemctl("is-active", "daytime.service") == "active"
    sc.steps.append("test_enable_and_query")


def test_upgrade_restarts_and_keeps_serving(sc: Scenario) -> None:
    """Reinstalling runs the upgrade paths of the maintainer scripts (prerm/preinst upgrade,
    postinst configure OLD-VERSION): the running service is restarted, so the new code is in
    use, while the socket keeps listening in PID 1 (never closed, so no client is refused
    during the upgrade), and the enablement is kept."""
    ct = sc.ct
    pid_before = ct.systemctl("show", "-p", "MainPID", "--value", "daytime.service")
    assert pid_before != "0"
    listening_since = ct.systemctl("show", "-p", "ActiveEnterTimestampMonotonic", "--value",
                                   "daytime.socket")  # fmt: skip
    ct.run(["apt-get", "install", "-y", "--reinstall", sc.deb], timeout=300)
    assert ct.systemctl("is-active", "daytime.socket") == "active"
    assert ct.systemctl("is-active", "daytime.service") == "active"
    pid_after = ct.systemctl("show", "-p", "MainPID", "--value", "daytime.service")
    assert pid_after not in ("0", pid_before)
    assert listening_since == ct.systemctl(
        "show", "-p", "ActiveEnterTimestampMonotonic", "--value", "daytime.socket"
    ), "daytime.socket was restarted by the upgrade"
    assert ct.systemctl("is-enabled", "daytime.socket") == "enabled"
    assert ct.systemctl("is-enabled", "daytime-udp.socket", check=False) == "disabled"
    for host in ("127.0.0.1", "::1"):
        data = query(ct, host)
        assert CTIME_LINE.fullmatch(data), f"[{host}]:13 answered {data!r}"
    sc.steps.append("test_upgrade_restarts_and_keeps_serving")


def test_man_page_renders(sc: Scenario) -> None:
    # As an unprivileged user, as users read man pages; root's man would also store a
    # formatted copy in /var/cache/man/cat8, which is man-db's cache, not the package's.
    proc = sc.ct.run(
        [
            "runuser",
            "-u",
            "nobody",
            "--",
            "env",
            "MANWIDTH=80",
            "man",
            "--warnings",
            "-P",
            "cat",
            "daytime-sd",
        ]
    )
    assert proc.stderr == ""
    text = re.sub(".\b", "", proc.stdout)
    assert re.search(r"^DAYTIME-SD\(8\)", text, re.M), text[:500]
    assert "daytime-sd - RFC 867 Daytime service" in text
    for section in ("SYNOPSIS", "OPTIONS", "EXIT STATUS", "STANDARDS"):
        assert re.search(rf"^{section}$", text, re.M), section
    assert sc.ct.run(["man", "-w", "daytime-sd"]).stdout == "/usr/share/man/man8/daytime-sd.8.gz\n"
    sc.steps.append("test_man_page_renders")


def test_remove_closes_port(sc: Scenario) -> None:
    ct = sc.ct
    assert listening(ct, 13)
    ct.run(["apt-get", "remove", "-y", "daytime-sd"], timeout=300)
    for unit in UNITS:
        assert ct.systemctl("is-active", unit, check=False) == "inactive", unit
    assert not listening(ct, 13)
    assert not listening(ct, 13, "udp")
    for host in ("127.0.0.1", "::1"):
        result = ct.client("tcp", host, "13", "--timeout", "5")
        assert not result["ok"] and "ConnectionRefused" in str(result["error"]), result
    # Removed, not purged: the enablement is remembered for a reinstall.
    state = ct.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "daytime-sd"]).stdout
    assert state.strip() == "rc"
    sc.steps.append("test_remove_closes_port")


def test_purge_leaves_nothing(sc: Scenario) -> None:
    ct = sc.ct
    ct.run(["apt-get", "purge", "-y", "daytime-sd"], timeout=300)
    assert ct.run(["dpkg-query", "-W", "daytime-sd"], check=False).returncode != 0
    after = file_list(ct)
    added = {p for p in after - sc.files_before if not BOOKKEEPING.match(p)}
    assert not added, "left behind after purge:\n" + "\n".join(sorted(added))
    removed = {p for p in sc.files_before - after if not BOOKKEEPING.match(p)}
    assert not removed, "existed before the install, gone now:\n" + "\n".join(sorted(removed))
    for unit in UNITS:
        assert "daytime" not in ct.systemctl("list-unit-files", unit, check=False), unit
    sc.steps.append("test_purge_leaves_nothing")
