# SPDX-License-Identifier: MIT
"""The README's and the Makefile's commands exist (issue 11 defect 12: the README's first
query used nc, which `make deps` does not install, and the Makefile named a module that
did not exist)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import daytime_sd

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
MAKEFILE = (REPO / "Makefile").read_text()
TARGETS = set(re.findall(r"^([a-z][a-z-]*):", MAKEFILE, re.M))


def test_every_make_target_the_readme_names_exists() -> None:
    named = set(re.findall(r"\bmake ([a-z][a-z-]*)", README))
    assert named, "the README names no make target"
    assert named <= TARGETS, named - TARGETS


def test_every_python_module_the_readme_and_makefile_name_exists() -> None:
    modules = set(re.findall(r"python3? -m ([a-z_][a-z_.]*)", README + MAKEFILE))
    modules |= set(re.findall(r"\$\(PYTHON\) -m ([a-z_][a-z_.]*)", MAKEFILE))
    for module in modules:
        assert importlib.util.find_spec(module) is not None, module


def test_the_first_query_command_needs_nothing_make_deps_does_not_install() -> None:
    first = next(line for line in README.splitlines() if line.startswith("    $ "))
    assert first.startswith("    $ make query"), first
    assert "query" in TARGETS
    assert "$(PYTHON) -c" in MAKEFILE.split("\nquery:", 1)[1].split("\n\n", 1)[0]


def test_every_module_is_in_the_layout_table() -> None:
    """Issue 21.11: the table listed 12 of 23 modules."""
    layout = README.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([a-z_]+\.py)`", layout))
    # The package under test: the tree's, or the installed one when the autopkgtest runs this
    # from a copy of the tree without daytime_sd/.
    modules = {p.name for p in Path(daytime_sd.__file__).parent.glob("*.py")}
    assert listed == modules, (modules - listed, listed - modules)
