# SPDX-License-Identifier: MIT
"""Fixtures for the real-systemd rig (see rig.py).

Every e2e test runs once per release in DAYTIME_E2E_RELEASES (default: bookworm and trixie;
`make test-unstable` runs sid): the `release` fixture is session-scoped and parametrized, so
pytest runs all tests of one release, then all of the next.  Every rootfs that is missing is
built, all at once, from the moment collection has found an e2e test (so that the builds overlap
with the host tests that run first) and before the first container boots.

Skips, with the reason printed in the summary, only when the rig truly cannot run: not root.
With the ``CI`` environment variable set, that is a failure instead: CI must run these tests.
Every other problem (no mirror, debootstrap or boot failure, ...) is an error, never a skip.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from .rig import (
    REPO_ROOT,
    Container,
    RigUnavailable,
    check_host,
    ensure_rootfses,
    mounts_under,
    selected_releases,
)

# Building the rootfses (minutes on a new machine) starts as soon as collection has found an
# e2e test, in a background thread, so that it overlaps with the host tests that run first
# (unit tests, the .deb build, the bench smoke run); the `rootfses` fixture waits for it.
_prebuilt: Future[dict[str, Path]] | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    global _prebuilt
    here = Path(__file__).parent
    if os.geteuid() != 0 or not any(item.path.is_relative_to(here) for item in session.items):
        return
    try:
        check_host()
    except RigUnavailable:
        return  # the fixtures report it
    future: Future[dict[str, Path]] = Future()

    def build() -> None:
        try:
            future.set_result(ensure_rootfses(selected_releases()))
        except BaseException as e:  # handed to the fixture, which raises it in its test
            future.set_exception(e)

    # A daemon thread: a run that stops early does not wait for the build, and a build cut
    # off this way is cleaned up by the next run (see ensure_rootfs).
    threading.Thread(target=build, name="rootfs-prebuild", daemon=True).start()
    _prebuilt = future


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
    if _prebuilt is not None:
        return _prebuilt.result()
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
