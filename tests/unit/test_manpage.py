# SPDX-License-Identifier: MIT
"""man/daytime-sd.8: lint-clean; its OPTIONS match `daytime-sd --help` and the README."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MANPAGE = ROOT / "man" / "daytime-sd.8"
README = ROOT / "README.md"

# A long option as written in --help, the README or rendered roff: --name, --name-part.
OPTION_RE = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed (see Makefile APT_PACKAGES)"
    return path


def _section(name: str) -> list[str]:
    """Source lines of one .SH section of the man page, with roff \\- turned into -."""
    lines = MANPAGE.read_text(encoding="utf-8").splitlines()
    out: list[str] = []
    inside = False
    for line in lines:
        if line.startswith(".SH "):
            inside = line[4:].strip().strip('"') == name
            continue
        if inside:
            out.append(line.replace("\\-", "-"))
    assert out, f"no .SH {name} section in {MANPAGE}"
    return out


def man_option_tags() -> set[str]:
    """The options that head an item (.TP/.TQ tag line) of the OPTIONS section."""
    lines = _section("OPTIONS")
    tags: set[str] = set()
    for i, line in enumerate(lines[:-1]):
        if line.split(" ")[0] in (".TP", ".TQ"):
            tags.update(OPTION_RE.findall(lines[i + 1]))
    return tags


def man_options_mentioned() -> set[str]:
    return set(OPTION_RE.findall("\n".join(_section("OPTIONS"))))


def readme_contract_options() -> set[str]:
    """Options in the first column of the README's command line contract table."""
    options: set[str] = set()
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `--"):
            first_cell = line.split("|")[1]
            options.update(OPTION_RE.findall(first_cell))
    assert options, "no option table found in README.md"
    return options


def help_options() -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "daytime_sd", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, f"--help exited {proc.returncode}: {proc.stderr}"
    options = set(OPTION_RE.findall(proc.stdout))
    assert "--help" in options, proc.stdout
    return options


def test_mandoc_lint_is_clean() -> None:
    proc = subprocess.run(
        [_tool("mandoc"), "-Tlint", str(MANPAGE)], capture_output=True, text=True, check=False
    )
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_groff_reports_nothing() -> None:
    proc = subprocess.run(
        [_tool("groff"), "-ww", "-z", "-man", str(MANPAGE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


@pytest.mark.parametrize(
    "section",
    [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "UNITS",
        "UDP",
        "ACCESS CONTROL",
        "FILES",
        "EXIT STATUS",
        "EXAMPLES",
        "SECURITY",
        "SEE ALSO",
        "STANDARDS",
    ],
)
def test_section_present(section: str) -> None:
    assert _section(section)


def test_examples_and_references() -> None:
    examples = "\n".join(_section("EXAMPLES"))
    for command in ("nc localhost 13", "systemctl edit daytime.socket", "journalctl -u"):
        assert command in examples
    see_also = "\n".join(_section("SEE ALSO"))
    for page in ("systemd.socket (5)", "sd_listen_fds (3)", "inetd (8)"):
        assert page in see_also
    assert "RFC 867" in "\n".join(_section("STANDARDS"))
    units = "\n".join(_section("UNITS"))
    assert "Accept=yes" in units
    assert "IPAddressAllow=" in "\n".join(_section("ACCESS CONTROL"))


def test_man_options_match_readme_contract() -> None:
    assert man_option_tags() == readme_contract_options()


def test_every_help_option_is_documented() -> None:
    assert help_options() - man_option_tags() == set()


def test_every_documented_option_exists() -> None:
    assert man_options_mentioned() - help_options() == set()


def test_the_default_format_is_the_seeds_as_documented() -> None:
    """Issue 21.11: the man page called the default ctime(3), which pads the day with a space."""
    from daytime_sd.protocol import DEFAULT_FORMAT, PRESETS, render

    text = MANPAGE.read_text()
    assert '.RB ( "%a %b %d %T %Y" ,' in text
    assert "zero\\-padded" in text
    day_4 = 1_793_772_000.0  # 2026-11-04 06:00 UTC
    assert render(PRESETS[DEFAULT_FORMAT], day_4, True) == render("%a %b %d %T %Y", day_4, True)
    assert render(PRESETS[DEFAULT_FORMAT], day_4, True) == b"Wed Nov 04 06:00:00 2026\r\n"
