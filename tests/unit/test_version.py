"""One version: debian/changelog, pyproject, daytime_sd.__version__, --version, man page."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

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


def test_changelog_matches_package_version() -> None:
    # A native package: no Debian revision, so the versions are identical.
    assert changelog_version() == daytime_sd.__version__


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
