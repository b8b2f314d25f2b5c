# SPDX-License-Identifier: MIT
"""Fixtures shared by the unit tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import daytime_sd

ROOT = Path(__file__).resolve().parents[2]  # the tree under test (a copy, under make mutants)
# Where the package under test is: ROOT, or dist-packages in the autopkgtest, whose copy of the
# tree has no daytime_sd/ and where -S leaves dist-packages off sys.path.
PACKAGE_ENV = {**os.environ, "PYTHONPATH": str(Path(daytime_sd.__file__).resolve().parents[1])}
# What the serving process and the per-connection path keep out (test_import_budget has the
# whole list, checked on the real service): the pure-Python collections package and typing.
HEAVY = frozenset({"collections", "collections.abc", "typing"})


@pytest.fixture
def lean_import() -> Callable[..., None]:
    """Check that a fresh ``python3 -S`` (as the launcher runs) importing ``module`` from this
    tree loads none of HEAVY (or of the given set): every forked child and per-connection
    process would pay."""

    def loaded(imports: str) -> set[str]:
        code = f"import sys{imports}; print(*sys.modules)"
        proc = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, env=PACKAGE_ENV,
                              capture_output=True, text=True, check=True)  # fmt: skip
        return set(proc.stdout.split())

    # What the interpreter itself loads running a do-nothing -c is not the module's doing
    # (Python 3.14 loads more of it at start than 3.11), as in test_import_budget.
    baseline = loaded("")

    def check(module: str, heavy: frozenset[str] = HEAVY) -> None:
        added = loaded(f", {module}") - baseline
        assert module in added
        assert not heavy & added, sorted(heavy & added)

    return check


@pytest.fixture
def zone() -> Iterator[Callable[[str], None]]:
    """Set the process's zone for one test; restore it (and tzset) afterwards."""
    saved = os.environ.get("TZ")

    def set_zone(name: str) -> None:
        if not name.startswith(("UTC", "AAA")):  # POSIX rules need no file
            assert Path("/usr/share/zoneinfo", name).is_file(), f"tzdata lacks {name}"
        os.environ["TZ"] = name
        time.tzset()

    yield set_zone
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()
