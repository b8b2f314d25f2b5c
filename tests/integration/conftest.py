# SPDX-License-Identifier: MIT
"""The rule for tests that need root: a skip that says why, and a failure under ``CI``.

CI runs as root, so a test marked ``needs_root`` that finds itself without root there is a
broken CI setup, not something to skip past (the e2e conftest has the same rule).
"""

from __future__ import annotations

import os
import resource
import sys

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_root(reason): the test needs root, and why")
    # The flood tests hold a thousand and more client sockets in this process: take the
    # whole hard limit, whatever soft limit the caller had (1024 in an autopkgtest testbed).
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("needs_root")
    if marker is None or os.geteuid() == 0:
        return
    reason = marker.args[0] if marker.args else "needs root"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but this test cannot run without root: {reason}", pytrace=False)
    print(f"\nSKIP {item.nodeid}: {reason}", file=sys.stderr)
    pytest.skip(reason)
