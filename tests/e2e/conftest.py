"""Fixtures for the real-systemd rig (see rig.py).

Every e2e test runs once per release in DAYTIME_E2E_RELEASES (default: bookworm and trixie;
`make test-unstable` runs sid): the `release` fixture is session-scoped and parametrized, so
pytest runs all tests of one release, then all of the next.  Every rootfs that is missing is
built, all at once, before the first container boots.

Skips, with the reason printed in the summary, only when the rig truly cannot run: not root.
With the ``CI`` environment variable set, that is a failure instead: CI must run these tests.
Every other problem (no mirror, debootstrap or boot failure, ...) is an error, never a skip.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .rig import (
    REPO_ROOT,
    Container,
    ensure_rootfses,
    mounts_under,
    selected_releases,
)

# The bookworm -> trixie release upgrade belongs to the runs that prove both releases (`make
# test`); elsewhere (`make test-unstable`) it is not collected at all, rather than skipped.
collect_ignore = (
    [] if {"bookworm", "trixie"} <= set(selected_releases()) else ["test_release_upgrade.py"]
)


def _require_rig() -> None:
    if os.geteuid() != 0:
        reason = "e2e rig needs root (systemd-nspawn, debootstrap, cgroup directories)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but the e2e rig cannot run: {reason}", pytrace=False)
        print(f"\nSKIP: {reason}", file=sys.stderr)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def rootfses() -> dict[str, Path]:
    _require_rig()
    return ensure_rootfses(selected_releases())


@pytest.fixture(scope="session", params=selected_releases())
def release(request: pytest.FixtureRequest) -> str:
    name = request.param
    assert isinstance(name, str)
    return name


@pytest.fixture(scope="session")
def rootfs(rootfses: dict[str, Path], release: str) -> Path:
    return rootfses[release]


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .deb `make deb` builds on this host, once per run: the package every release's
    container installs (what an admin downloads is one .deb for all releases)."""
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [str(REPO_ROOT / "tools" / "build-deb"), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, f"tools/build-deb failed:\n{proc.stderr[-6000:]}"
    assert Path(proc.stdout.strip().splitlines()[-1]).parent == out
    return out


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="module")
def container(rootfs: Path) -> Iterator[Container]:
    """One booted container per test module, with the project installed from the tree."""
    # SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C, so the teardown below still runs.
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield from _booted(rootfs)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _booted(rootfs: Path) -> Iterator[Container]:
    t0 = time.monotonic()
    with Container(rootfs) as ct:
        print(f"\n[rig] {ct.name} booted in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        ct.install_from_tree(REPO_ROOT)
        leader = ct.leader
        yield ct
    # Container.stop() raised if anything was left; double-check from the outside.
    leftovers = [str(cg) for cg in ct.cgroups if cg.exists()]
    assert not leftovers, f"rig left cgroup directories behind: {leftovers}"
    assert not mounts_under(rootfs), f"rig left mounts behind: {mounts_under(rootfs)}"
    assert not Path(f"/proc/{leader}").exists(), "container PID 1 still running"


@pytest.fixture
def ct(container: Container) -> Container:
    """The module's container, with every daytime unit stopped, disabled and un-dropped-in."""
    container.reset_daytime()
    return container
