# SPDX-License-Identifier: MIT
"""The benchmark's smoke run (`bench/run.py --smoke`) so that `make bench` never rots.

One repeat of 0.3 s per cell for every server the machine can run; no performance
target is asserted here (those are read from `make bench` output).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
FIGURES = (
    r"\(load [\d.]+, steal [\d.]+%, other processes [\d.]+% of the CPU before the run and "
    r"[\d.]+% over it\)"
)
QUIET_LINE = rf"machine: (quiet {FIGURES}|NOT QUIET {FIGURES} — do not publish these figures: .+)"


@pytest.fixture(autouse=True)
def _gcc() -> None:
    """No gcc: a skip that says so, but a failure under CI (make deps installs gcc)."""
    if shutil.which("gcc") is None:
        reason = "gcc is needed to build bench/*.c"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {reason}", pytrace=False)
        pytest.skip(reason)


def test_bench_smoke(tmp_path: Path) -> None:
    build = REPO / "bench" / "build"
    build_before = set(build.iterdir()) if build.is_dir() else set()
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--smoke", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The inetds' configuration lives in a directory of the run's own, gone when it ends.
    left = {p.name for p in set(build.iterdir()) - build_before}
    assert not {n for n in left if n.startswith(("run-", "inetd-", "xinetd-"))}, left
    assert "| server |" in proc.stdout, proc.stdout[-3000:]
    md = (tmp_path / "smoke.md").read_text()
    assert md.startswith("## daytime benchmark")

    doc: dict[str, Any] = json.loads((tmp_path / "smoke.json").read_text())
    # Issue 11: every run says whether the machine was quiet, right under the title of the
    # results and as the last line on stdout, so that a loaded run is never published.
    machine: dict[str, Any] = doc["meta"]["machine"]
    line = machine["line"]
    assert re.fullmatch(QUIET_LINE, line), line
    assert md.splitlines()[2] == line, md[:1000]
    assert proc.stdout.rstrip("\n").splitlines()[-1] == line, proc.stdout[-1000:]
    assert line.startswith("machine: quiet (") == machine["quiet"] == (not machine["reasons"])
    # And which code it measured: the commit of this tree (a published result names it).
    head = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %cs"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert md.splitlines()[4].startswith(f"daytime-sd measured: commit {head}"), md[:1000]
    for scope in ("before", "run"):
        assert 0 <= machine[scope]["others_pct"] <= 100, machine
        assert 0 <= machine[scope]["steal_pct"] <= 100, machine
    assert machine["before"]["seconds"] > 0, machine
    raw: dict[str, Any] = doc["raw"]
    ran = {k: v for k, v in raw.items() if not v.get("skipped")}
    # A server the machine cannot run is skipped by bench/run.py with the reason (the inetd
    # rows need root and `apt-get download` of the daemons and of the libraries they lack).
    # CI has all of that (make deps), so there a skipped row is a failure.
    skipped = {k: v["skipped"] for k, v in raw.items() if v.get("skipped")}
    if os.environ.get("CI"):
        assert not skipped, f"CI is set but bench/run.py skipped servers: {skipped}"
    for key, why in skipped.items():
        print(f"bench smoke: {key} skipped: {why}", file=sys.stderr)
    # The C references need only gcc, the bare Python servers only python3: they always run.
    assert {"c-epoll", "py-epoll", "c-fork", "c-epoll-udp", "py-fork"} <= ran.keys(), raw.keys()
    for key, server in ran.items():
        assert not server.get("failures"), (key, server.get("failures"))
        runs = [r for cell in server["runs"].values() for r in cell]
        assert len(server["runs"]) >= 4, (key, server["runs"].keys())
        assert sum(r["connections"] for r in runs) > 0, key
        assert all(r["errors"]["bad_line"] == 0 for r in runs), key
        assert all(0 <= r["quiet"]["others_pct"] <= 100 for r in runs), key  # every cell
    # The one-thread cells say what each connection cost the load generator and the server,
    # and how often the server slept (its voluntary context switches: an idle loop sleeps).
    assert "### One load thread (c=8, c=64)" in md, md[-3000:]
    assert all(r["server_sleeps"] > 0 for r in raw["py-epoll"]["runs"]["c=8"]), raw["py-epoll"]
    assert doc["summary"]["py-epoll"]["c=8"]["loadgen_us_per_conn"] > 0, doc["summary"]
