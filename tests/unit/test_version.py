# SPDX-License-Identifier: MIT
"""One version: debian/changelog, pyproject, daytime_sd.__version__, --version, man page."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import daytime_sd

ROOT = Path(__file__).resolve().parents[2]


def changelog_version() -> str:
    first = (ROOT / "debian" / "changelog").read_text(encoding="utf-8").splitlines()[0]
    match = re.fullmatch(r"daytime-sd \(([^()\s]+)\) [a-z-]+; urgency=[a-z]+", first)
    assert match, f"unexpected first line of debian/changelog: {first!r}"
    return match.group(1)


def test_pyproject_version_is_the_package_version() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["version"] == daytime_sd.__version__
    assert "dynamic" not in pyproject["project"]


def upstream_matches(debian_version: str, upstream: str) -> bool:
    """Whether a Debian version is the upstream version ``upstream`` packaged.

    The upstream part may be followed by what Debian appends without changing the code: a
    Debian revision (``-1``, ``-1+deb13u1``), a native NMU or stable update (``+nmu1``,
    ``+deb13u1``) or a backport (``~bpo12+1``), and preceded by an epoch (``1:``).  Any other
    character after it (``0.1.0.1``, ``0.1.00``) is another upstream version.
    """
    match = re.fullmatch(r"(?:\d+:)?(.+?)(?:[-+~].*)?", debian_version)
    return match is not None and match.group(1) == upstream


@pytest.mark.parametrize(
    "debian_version",
    ["0.1.0", "0.1.0-1", "0.1.0+nmu1", "0.1.0+deb13u1", "0.1.0-1+deb13u1", "0.1.0~bpo12+1",
     "0.1.0-1~bpo12+1", "1:0.1.0-2"],
)  # fmt: skip
def test_debian_suffixes_keep_the_upstream_version(debian_version: str) -> None:
    assert upstream_matches(debian_version, "0.1.0")


@pytest.mark.parametrize(
    "debian_version", ["0.1.1", "0.1.1-1", "0.1.0.1", "0.1.00", "0.1", "0.10.0+nmu1", "1:0.2.0"]
)
def test_another_upstream_version_is_refused(debian_version: str) -> None:
    assert not upstream_matches(debian_version, "0.1.0")


def test_changelog_matches_package_version() -> None:
    # NMUs, stable updates and backports add a suffix (and a revision once the package is
    # 3.0 (quilt), see debian/README.source); the upstream part must stay __version__.
    assert upstream_matches(changelog_version(), daytime_sd.__version__), changelog_version()


def test_version_option_prints_package_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "daytime_sd", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        0,
        f"daytime-sd {daytime_sd.__version__}\n",
        "",
    )


def test_manpage_footer_version() -> None:
    th = next(
        line
        for line in (ROOT / "man" / "daytime-sd.8").read_text(encoding="utf-8").splitlines()
        if line.startswith(".TH ")
    )
    assert f'"daytime\\-sd {daytime_sd.__version__}"' in th
