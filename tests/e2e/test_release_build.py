# SPDX-License-Identifier: MIT
"""Issue 10 in each release: the source builds there with that release's own tools, its lintian
is clean, and the package it builds upgrades the one `make deb` built here.

One booted container per release (module scope, all tools in the cached rootfs, no network):
`dpkg-buildpackage -us -uc` of a fresh copy of the tree (source and binary, build-time tests
under every Python the release supports), then that release's lintian on the result, then the
path change: the .deb built on this (bookworm) host, units under /lib/systemd/system, upgraded
in place by the one built in the release, units where that release wants them.  What the
release built is checked as test_deb_build checks the host's .deb: the launcher's shebang
(python3 -S), the exact contents, no duplicate maintainer-script snippet, and `debian/rules
clean` restoring the tree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from integration.test_deb_build import (
    check_contents,
    check_no_duplicate_snippets,
    expected_files,
    shebang,
)

import daytime_sd

from .rig import CTIME_LINE, REPO_ROOT, UNITS, Container
from .test_deb import copy_source_tree

VERSION = daytime_sd.__version__


def unit_dir(release: str) -> str:
    """Where each release's debhelper installs system units (debian/README.source)."""
    return "/lib/systemd/system" if release == "bookworm" else "/usr/lib/systemd/system"


@dataclass
class Built:
    ct: Container
    release: str
    returncode: int
    log: str
    out: Path  # host directory holding what the build made
    src: Path  # the tree that was built, as it was


BUILD = f"""
export HOME=/root
rm -rf /srv/build && mkdir -p /srv/build
cp -a /srv/src/daytime-sd-{VERSION} /srv/build/
cd /srv/build/daytime-sd-{VERSION}
dpkg-buildpackage -us -uc 2>&1
cp ../daytime-sd_{VERSION}* /srv/out/
dpkg-deb --control ../daytime-sd_{VERSION}_all.deb /srv/out/control
debian/rules clean >/srv/out/clean.log 2>&1
diff -r /srv/src/daytime-sd-{VERSION} . >/srv/out/clean.diff || true
"""


@pytest.fixture(scope="module")
def built(
    rootfs: Path, release: str, dist: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    src = tmp_path_factory.mktemp("src")
    copy_source_tree(src / f"daytime-sd-{VERSION}")
    out = tmp_path_factory.mktemp(f"out-{release}")
    binds_ro = {src: "/srv/src", dist: "/srv/debs"}
    with Container(rootfs, binds_ro=binds_ro, binds={out: "/srv/out"}) as ct:
        proc = ct.run(["sh", "-ec", BUILD], check=False, timeout=900)
        log = proc.stdout + proc.stderr
        yield Built(ct, release, proc.returncode, log, out, src / f"daytime-sd-{VERSION}")


def test_source_builds_with_the_release_tools(built: Built) -> None:
    assert built.returncode == 0, built.log[-6000:]
    assert "dpkg-buildpackage: info: full upload" in built.log, built.log[-2000:]
    # The build-time tests ran, and passed, under every Python 3 the release supports.
    pythons = built.ct.run(["py3versions", "--supported"]).stdout.split()
    assert pythons, "py3versions lists no supported Python"
    for python in pythons:
        assert re.search(rf"^I: pybuild base:\d+: cd .*; {python} -m pytest", built.log, re.M), (
            f"no build-time tests under {python}:\n{built.log[-4000:]}"
        )
    summaries = re.findall(r"^=+ (.*) in [\d.]+s", built.log, re.M)
    assert len(summaries) == len(pythons), summaries
    for summary in summaries:
        assert re.fullmatch(r"\d+ passed", summary), summaries
    print(f"{built.release}: build-time tests under {pythons}: {summaries}")


def test_build_prints_no_warning(built: Built) -> None:
    """No warning at all, deprecations included, from setuptools, pybuild, debhelper, dpkg
    or the build-time tests (pytest's warnings summary)."""
    assert built.returncode == 0
    warned = [line for line in built.log.splitlines() if re.search(r"warn|deprecat", line, re.I)]
    assert warned == [], "\n".join(warned)


def lintian_tags(report: str) -> set[str]:
    return set(re.findall(r"^[EWIPX]: \S+(?: \S+)?: ([a-z0-9][a-z0-9+.-]+)", report, re.M))


def test_lintian_of_the_release_is_clean(built: Built) -> None:
    assert built.returncode == 0
    (changes,) = built.out.glob(f"daytime-sd_{VERSION}_*.changes")
    proc = built.ct.run(
        ["lintian", "--fail-on", "error,warning", "-I", "--pedantic", f"/srv/out/{changes.name}"],
        check=False,
        timeout=600,
    )
    report = proc.stdout + proc.stderr
    print(f"{built.release} lintian -I --pedantic:\n{report}")
    assert proc.returncode == 0, report
    assert not re.search(r"^[EW]: ", report, re.M), report
    # The report covered the source package and the .deb, not only the .changes.
    listed = (built.out / changes.name).read_text()
    assert f"daytime-sd_{VERSION}.dsc" in listed and f"daytime-sd_{VERSION}_all.deb" in listed
    # Every info or pedantic tag left is explained in debian/README.source.
    readme = (REPO_ROOT / "debian" / "README.source").read_text(encoding="utf-8")
    assert {tag for tag in lintian_tags(report) if tag not in readme} == set(), report


def deb_paths(ct: Container, deb: str) -> list[str]:
    listing = ct.run(["dpkg-deb", "--contents", deb]).stdout
    return [line.split()[-1].removeprefix(".") for line in listing.splitlines()]


def test_units_are_where_the_release_wants_them(built: Built) -> None:
    assert built.returncode == 0
    paths = deb_paths(built.ct, f"/srv/out/daytime-sd_{VERSION}_all.deb")
    units = sorted(p for p in paths if re.search(r"\.(socket|service)$", p))
    assert units == sorted(f"{unit_dir(built.release)}/{u}" for u in UNITS), units
    if built.release != "bookworm":
        # Policy 10.1 (4.7.1): nothing into the aliased /bin, /sbin or /lib.
        aliased = [p for p in paths if re.match(r"/(bin|sbin|lib)(/|$)", p)]
        assert aliased == [], aliased


def test_the_launcher_keeps_python3_minus_s(built: Built) -> None:
    """dh-python 6 (trixie, sid) rewrites shebangs; debian/rules tells it the command."""
    assert built.returncode == 0
    deb = f"/srv/out/daytime-sd_{VERSION}_all.deb"
    script = built.ct.run(
        ["sh", "-c", f"dpkg-deb --fsys-tarfile {deb} | tar -xOf - ./usr/sbin/daytime-sd"]
    ).stdout
    print(f"{built.release}: {script.splitlines()[0]}")
    assert shebang(script) == ["/usr/bin/python3", "-S"], script.splitlines()[0]


def test_contents_exactly(built: Built) -> None:
    assert built.returncode == 0
    listing = built.ct.run(["dpkg-deb", "--contents", f"/srv/out/daytime-sd_{VERSION}_all.deb"])
    paths = {}
    for line in listing.stdout.splitlines():
        name = line.split()[5]  # mode owner size date time name (no symlinks shipped)
        paths["/" + name.removeprefix("./").rstrip("/")] = name.endswith("/")
    check_contents(paths, expected_files(built.src, unit_dir(built.release)))


def test_maintainer_scripts_have_no_duplicate_snippets(built: Built) -> None:
    assert built.returncode == 0
    control = built.out / "control"
    scripts = {p.name: p.read_text() for p in control.iterdir() if p.name.endswith(("inst", "rm"))}
    check_no_duplicate_snippets(scripts)
    assert "deb-systemd-helper purge 'daytime.socket'" in scripts["postrm"], scripts["postrm"]


def test_rules_clean_restores_the_tree(built: Built) -> None:
    assert built.returncode == 0
    assert (built.out / "clean.diff").read_text() == "", (built.out / "clean.log").read_text()


def unit_state(ct: Container) -> tuple[str, str, str]:
    return (
        ct.systemctl("is-enabled", "daytime.socket", check=False),
        ct.systemctl("is-active", "daytime.socket", check=False),
        ct.systemctl("is-enabled", "daytime-udp.socket", check=False),
    )


def daytime_files(ct: Container) -> list[str]:
    """Every daytime unit, drop-in, enablement link or deb-systemd-helper record on disk."""
    find = (
        "find /etc/systemd /lib/systemd/system /usr/lib/systemd/system /var/lib/systemd"
        " -name '*daytime*' 2>/dev/null | sort"
    )
    return ct.run(["sh", "-c", find], check=False).stdout.split()


def test_upgrade_across_the_path_change_keeps_the_socket(built: Built, dist: Path) -> None:
    """The .deb built here (bookworm's layout) installed, then replaced in place by the one the
    release built (its own layout): enabled and answering before and after, and the units
    belong to the package at their new path only.  Then purge leaves nothing."""
    assert built.returncode == 0
    ct = built.ct
    (host_deb,) = dist.glob("daytime-sd_*_all.deb")
    ct.run(["apt-get", "install", "-y", f"/srv/debs/{host_deb.name}"], timeout=300)
    assert unit_state(ct) == ("enabled", "active", "disabled")
    assert CTIME_LINE.fullmatch(ct.query("tcp", "127.0.0.1"))

    ct.run(["dpkg", "-i", f"/srv/out/daytime-sd_{VERSION}_all.deb"], timeout=300)
    assert unit_state(ct) == ("enabled", "active", "disabled")
    for host in ("127.0.0.1", "::1"):
        assert CTIME_LINE.fullmatch(ct.query("tcp", host))
    where = unit_dir(built.release)
    owned = ct.run(["dpkg", "-L", "daytime-sd"]).stdout.split()
    assert sorted(p for p in owned if re.search(r"\.(socket|service)$", p)) == sorted(
        f"{where}/{u}" for u in UNITS
    )
    # What systemd loads is the file at the new path (on merged /usr both paths reach it).
    fragment = ct.systemctl("show", "-p", "FragmentPath", "--value", "daytime.socket")
    assert fragment in (f"{where}/daytime.socket", f"/usr{where}/daytime.socket"), fragment

    ct.run(["apt-get", "purge", "-y", "daytime-sd"], timeout=300)
    assert daytime_files(ct) == []
    assert ct.run(["dpkg-query", "-W", "daytime-sd"], check=False).returncode != 0
