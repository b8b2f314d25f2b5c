"""Fixtures for the real-systemd rig (see rig.py).

Skips, with the reason printed in the summary, only when the rig truly cannot run: not root.
With the ``CI`` environment variable set, that is a failure instead: CI must run these tests.
Every other problem (no mirror, debootstrap or boot failure, ...) is an error, never a skip.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .rig import REPO_ROOT, Container, ensure_rootfs, mounts_under


def _require_rig() -> None:
    if os.geteuid() != 0:
        reason = "e2e rig needs root (systemd-nspawn, debootstrap, cgroup directories)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but the e2e rig cannot run: {reason}", pytrace=False)
        print(f"\nSKIP: {reason}", file=sys.stderr)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def rootfs() -> Path:
    _require_rig()
    return ensure_rootfs()


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
