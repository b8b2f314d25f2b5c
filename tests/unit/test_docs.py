# SPDX-License-Identifier: MIT
"""README.md and docs/ stay true where a machine can tell (issue 22.4): every relative link
leads to a file or directory of the project, and every `make` target they name exists.

What they say about behaviour is kept honest elsewhere: the option table by test_manpage.py,
the module table and README's commands by test_newcomer_path.py, the quoted
`systemd-analyze security` exposure by tests/e2e/test_units.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MAKEFILE = (REPO / "Makefile").read_text()
TARGETS = set(re.findall(r"^([a-z][a-z-]*):", MAKEFILE, re.M))

# [text](target) in Markdown; the target ends at the first blank or closing parenthesis.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# A scheme (https:, mailto:) or a bare #anchor is not a file of the project.
EXTERNAL = re.compile(r"^([a-z][a-z0-9+.-]*:|#)", re.I)
# A make command as the docs write one: in backquotes, or at the start of a command line.
MAKE = re.compile(r"(?:`|^\s*(?:\$ |# )?)make ([a-z][a-z-]*)", re.M)


def broken_links(doc: Path, text: str) -> list[str]:
    """The relative link targets in ``text`` (the contents of ``doc``) that lead nowhere in
    the project; raises if there is no relative link at all."""
    links = [t for t in LINK.findall(text) if not EXTERNAL.match(t)]
    assert links, f"{doc.name} links to nothing in the project"
    broken = []
    for target in links:
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        if not path.is_relative_to(REPO) or not path.exists():
            broken.append(target)
    return broken


def test_the_docs_are_there() -> None:
    names = {d.relative_to(REPO).as_posix() for d in DOCS}
    assert {"README.md", "docs/architecture.md", "docs/testing.md", "docs/benchmark.md"} <= names


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.relative_to(REPO).as_posix())
def test_every_relative_link_leads_to_a_file_of_the_project(doc: Path) -> None:
    assert broken_links(doc, doc.read_text()) == []


def test_a_link_to_a_missing_file_or_outside_the_project_is_reported() -> None:
    doc = REPO / "docs" / "architecture.md"
    text = (
        "[ok](../README.md) [anchor](testing.md#the-layers) [web](https://example.org/x.md) "
        "[gone](nowhere.md) [out](../../etc/passwd) [here](#modules)"
    )
    assert broken_links(doc, text) == ["nowhere.md", "../../etc/passwd"]


def test_every_make_target_the_docs_name_exists() -> None:
    named = {
        (doc.relative_to(REPO).as_posix(), target)
        for doc in DOCS
        for target in MAKE.findall(doc.read_text())
    }
    assert named
    missing = sorted((doc, target) for doc, target in named if target not in TARGETS)
    assert not missing, missing
