# SPDX-License-Identifier: MIT
"""Issue 10, item 6: the package's autopkgtest (debian/tests) in each booted release.

Each release gets a fresh container from its cached rootfs, the .deb built on this host and a
copy of the source tree, and runs ``autopkgtest`` with the null runner inside it: the state
installing the package left (checked before anything is touched), Accept=no, Accept=yes, UDP,
IPv6, and the project's unit and integration tests against the installed package under that
release's python3.  The runs of all selected releases go at once (mostly waiting on sockets,
timeouts and processes, they leave the 2 cores room), before any other e2e test starts, so
that no timed test runs beside them: this module sorts first in tests/e2e.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .rig import Container
from .test_deb import copy_source_tree

TESTS = ("socket-activation", "ipv6", "upstream-tests")
# The testbed is a booted container thrown away afterwards, so the tests that need
# isolation-container (they start and stop system units) may run.  The null runner cannot
# know that: bookworm's claims isolation anyway, trixie's and later claim none (and assert
# when told to fake it), so every release is told to run them regardless.
AUTOPKGTEST = ("autopkgtest", "--no-built-binaries", "--ignore-restrictions=isolation-container")


@pytest.fixture(scope="session")
def autopkgtest_runs(
    rootfses: dict[str, Path], dist: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[int, str]]:
    """release -> (exit status, output) of its autopkgtest; all releases run at once."""
    source = tmp_path_factory.mktemp("autopkgtest-source") / "daytime-sd"
    copy_source_tree(source)
    (deb,) = dist.glob("daytime-sd_*_all.deb")
    # Mark the copy as the tree the .deb was built from (dpkg-buildpackage writes this file),
    # so that autopkgtest runs its tests without rebuilding it (which needs dpkg-dev).
    (source / "debian" / "files").write_text(f"{deb.name} net optional\n")
    binds = {dist: "/srv/debs", source: "/srv/daytime-sd"}
    cmd = [*AUTOPKGTEST, f"/srv/debs/{deb.name}", "/srv/daytime-sd", "--", "null"]
    containers = {r: Container(rootfs, binds_ro=binds) for r, rootfs in rootfses.items()}
    running: dict[str, subprocess.Popen[str]] = {}
    results: dict[str, tuple[int, str]] = {}
    try:
        for release, ct in containers.items():
            ct.start()  # one after the other: a boot takes a second
            running[release] = ct.popen(cmd)
        for release, proc in running.items():
            out, err = proc.communicate(timeout=1500)
            results[release] = (proc.returncode, out + err)
    finally:
        for proc in running.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for ct in containers.values():
            ct.stop()
    return results


def test_autopkgtest_passes(release: str, autopkgtest_runs: dict[str, tuple[int, str]]) -> None:
    returncode, output = autopkgtest_runs[release]
    print(output)
    for test in TESTS:
        assert re.search(rf"^{test}\s+PASS", output, re.M), f"{test}:\n{output[-4000:]}"
    assert returncode == 0, output[-4000:]
    # The upstream tests really ran, under this release's python3, against the package, and
    # none was skipped.
    assert re.search(r"^testing /usr/share/daytime-sd/daytime_sd/", output, re.M)
    summary = re.search(r"^(\d+ passed.*) in [\d.]+s", output, re.M)
    assert summary and "skipped" not in summary.group(1), output[-4000:]
