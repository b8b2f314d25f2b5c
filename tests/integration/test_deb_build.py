# SPDX-License-Identifier: MIT
"""Build the .deb the way `make deb` does, from a fresh copy of the tree, and check it.

One build per module (about 10 s): tools/build-deb runs in a throw-away git repository holding
the project's current files (what a fresh clone would hold), so that the check "the work tree is
left clean" is not disturbed by anybody editing the real checkout at the same time.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import subprocess
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import daytime_sd

ROOT = Path(__file__).resolve().parents[2]
VERSION = daytime_sd.__version__
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def release_unit_dir(os_release: str) -> str:
    """Where the building release's debhelper puts system units (see debian/README.source):
    /lib/systemd/system on bookworm (debhelper 13.11.4), /usr/lib/systemd/system after it."""
    fields = dict(
        line.split("=", 1) for line in os_release.splitlines() if "=" in line and line[0] != "#"
    )
    codename = fields.get("VERSION_CODENAME", "").strip('"')
    return "/lib/systemd/system" if codename == "bookworm" else "/usr/lib/systemd/system"


UNIT_DIR = release_unit_dir(Path("/etc/os-release").read_text())


@dataclass(frozen=True)
class Build:
    tree: Path  # the fresh copy that was built
    deb: Path
    changes: Path
    buildinfo: Path


def copy_tree(src: Path, dst: Path) -> None:
    """Copy the files git would commit (tracked + untracked, not ignored) and commit them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=src,
        capture_output=True,
        check=True,
    ).stdout
    for name in sorted({n for n in listed.decode().split("\0") if n}):
        source = src / name
        if not os.path.lexists(source):
            continue  # deleted in the work tree, still in the index
        target = dst / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost.invalid"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run([*git, *args], cwd=dst, check=True)


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    tree = tmp_path_factory.mktemp("fresh-clone") / "daytime-sd"
    tree.mkdir()
    copy_tree(ROOT, tree)
    proc = subprocess.run(
        [str(tree / "tools" / "build-deb")],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, f"tools/build-deb failed:\n{proc.stderr[-6000:]}"
    dist = tree / "dist"
    deb = Path(proc.stdout.strip().splitlines()[-1])
    assert deb == dist / f"daytime-sd_{VERSION}_all.deb"
    assert deb.is_file()
    (changes,) = dist.glob(f"daytime-sd_{VERSION}_*.changes")
    (buildinfo,) = dist.glob(f"daytime-sd_{VERSION}_*.buildinfo")
    return Build(tree=tree, deb=deb, changes=changes, buildinfo=buildinfo)


def deb_members(deb: Path) -> dict[str, tarfile.TarInfo]:
    """The data.tar members of a .deb, keyed by absolute path."""
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(data.stdout)) as tar:
        return {os.path.normpath("/" + m.name): m for m in tar.getmembers()}


def deb_file(deb: Path, path: str) -> bytes:
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(data.stdout)) as tar:
        member = tar.extractfile("." + path)
        assert member is not None, path
        return member.read()


def source_units(tree: Path) -> set[str]:
    return {p.name for p in (tree / "systemd").iterdir() if p.suffix in (".socket", ".service")}


def test_build_leaves_tree_clean(build: Build) -> None:
    status = git_status(build.tree)
    outside_dist = [line for line in status if not line.startswith("!! dist/")]
    assert outside_dist == []
    assert sorted(p.name for p in (build.tree / "dist").iterdir()) == sorted(
        [build.deb.name, build.changes.name, build.buildinfo.name]
    )


def git_status(tree: Path) -> list[str]:
    """Everything git sees changed, untracked or ignored in ``tree``."""
    return subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()


def test_rules_clean_restores_the_tree(tmp_path: Path) -> None:
    """`debian/rules clean` after a build leaves the tree as it was (setuptools' egg-info
    included), so that a second `dpkg-source -b` packs the same files as the first."""
    tree = tmp_path / f"daytime-sd-{VERSION}"
    tree.mkdir()
    copy_tree(ROOT, tree)
    env = {"PATH": SYSTEM_PATH, "LC_ALL": "C.UTF-8", "HOME": str(tmp_path),
           "DEB_BUILD_OPTIONS": "nocheck"}  # fmt: skip
    for target in ("build", "clean"):
        proc = subprocess.run(["debian/rules", target], cwd=tree, env=env, capture_output=True,
                              text=True, timeout=300, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        if target == "build":  # the control: the build did write into the tree
            assert git_status(tree) != []
    assert git_status(tree) == []


def assert_lintian_clean(target: Path, readme: Path) -> None:
    """No error or warning, and every info/pedantic tag explained in README.source."""
    proc = subprocess.run(
        ["lintian", "--fail-on", "error,warning", "-I", "--pedantic", str(target)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    assert not re.search(r"^[EW]: ", report, re.M), report
    assert unexplained_tags(report, readme.read_text(encoding="utf-8")) == set(), report


def test_lintian_clean(build: Build) -> None:
    assert_lintian_clean(build.changes, build.tree / "debian" / "README.source")


def unexplained_tags(report: str, readme: str) -> set[str]:
    """Info/pedantic tags in a lintian report that are neither overridden nor in README.source."""
    tags = set(re.findall(r"^[IP]: \S+(?: \S+)?: ([a-z0-9][a-z0-9+.-]+)", report, re.M))
    return {tag for tag in tags if tag not in readme}


def test_source_package_lintian_clean(tmp_path: Path) -> None:
    # The native source package (what `dpkg-source -b` makes of a fresh clone) is clean too.
    tree = tmp_path / f"daytime-sd-{VERSION}"
    tree.mkdir()
    copy_tree(ROOT, tree)
    subprocess.run(["dpkg-source", "-b", tree.name], cwd=tmp_path, capture_output=True, check=True)
    dsc = tmp_path / f"daytime-sd_{VERSION}.dsc"
    assert_lintian_clean(dsc, tree / "debian" / "README.source")


def test_lintian_checked_the_deb_and_buildinfo(build: Build) -> None:
    # lintian reads the .deb and .buildinfo through the .changes; make sure they are listed.
    changes = build.changes.read_text(encoding="utf-8")
    assert build.deb.name in changes
    assert build.buildinfo.name in changes


def test_control_fields(build: Build) -> None:
    def field(name: str) -> str:
        return subprocess.run(
            ["dpkg-deb", "--field", str(build.deb), name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    assert field("Package") == "daytime-sd"
    assert field("Version") == VERSION
    assert field("Architecture") == "all"
    assert field("Section") == "net"
    depends = {d.strip().split(" ")[0] for d in field("Depends").split(",")}
    assert {"python3-systemd", "python3-sdnotify"} <= depends
    assert any(
        d.startswith("python3") and d not in ("python3-systemd", "python3-sdnotify")
        for d in depends
    ), depends


PRIVATE_DIR = "/usr/share/daytime-sd"


def expected_files(tree: Path, unit_dir: str) -> set[str]:
    """Every file the .deb built from ``tree`` ships, where it ships it.

    The modules are private (Python Policy 1.5) with no dist-info (debian/rules drops it), and
    dh_python3's rtupdate hook re-compiles them when the default python3 changes.  The same
    on every release's dh-python: bookworm's wrote a RECORD into the dist-info, trixie's an
    INSTALLER, and neither is shipped; only the units' directory depends on the release.
    """
    modules = {p.name for p in (tree / "daytime_sd").glob("*.py")}
    return {
        "/usr/sbin/daytime-sd",
        "/usr/share/man/man8/daytime-sd.8.gz",
        "/usr/share/doc/daytime-sd/changelog.gz",
        "/usr/share/doc/daytime-sd/copyright",
        "/usr/share/python3/runtime.d/daytime-sd.rtupdate",
        *(f"{unit_dir}/{unit}" for unit in source_units(tree)),
        *(f"{PRIVATE_DIR}/daytime_sd/{module}" for module in modules),
    }


def check_contents(paths: dict[str, bool], expected: set[str]) -> None:
    """``paths``: every path in the .deb -> whether it is a directory.  Exactly ``expected``
    files, and no directory that holds none of them (e.g. a leftover /usr/bin)."""
    files = {path for path, is_dir in paths.items() if not is_dir}
    missing, extra = sorted(expected - files), sorted(files - expected)
    assert (missing, extra) == ([], []), f"missing: {missing}, not expected: {extra}"
    dirs = {path for path, is_dir in paths.items() if is_dir and path != "/"}
    parents = {str(p) for f in files for p in Path(f).parents if str(p) != "/"}
    assert dirs == parents, f"empty or stray directories: {sorted(dirs - parents)}"


def test_contents_exactly(build: Build) -> None:
    members = deb_members(build.deb)
    check_contents({p: m.isdir() for p, m in members.items()}, expected_files(build.tree, UNIT_DIR))
    assert "daytime.socket" in source_units(build.tree)


@pytest.mark.parametrize(
    ("change", "wrong"),
    [
        (lambda f: f - {"/usr/share/daytime-sd/daytime_sd/cli.py"}, "missing"),
        (lambda f: f | {"/usr/lib/python3/dist-packages/daytime_sd/cli.py"}, "not expected"),
        (lambda f: f | {"/usr/bin/daytime-sd"}, "not expected"),
    ],
)
def test_contents_check_catches_a_missing_or_misplaced_file(
    change: Callable[[set[str]], set[str]], wrong: str
) -> None:
    """The control: a file gone, or installed where the policy does not want it, fails."""
    expected = expected_files(ROOT, "/usr/lib/systemd/system")
    shipped = change(expected)
    paths = {f: False for f in shipped} | {
        str(p): True for f in shipped for p in Path(f).parents if str(p) != "/"
    }
    with pytest.raises(AssertionError, match=wrong):
        check_contents(paths, expected)


def test_modes_and_owners(build: Build) -> None:
    for path, member in deb_members(build.deb).items():
        assert (member.uname, member.gname, member.uid, member.gid) == ("root", "root", 0, 0), path
        # The launcher, and dh_python3's hook that re-compiles the private modules.
        if member.isdir() or path in (
            "/usr/sbin/daytime-sd",
            "/usr/share/python3/runtime.d/daytime-sd.rtupdate",
        ):
            assert member.mode == 0o755, path
        else:
            assert member.isfile() and member.mode == 0o644, path


def shebang(script: str) -> list[str]:
    """The interpreter command of a script's first line (dh-python writes ``#! cmd``)."""
    first = script.splitlines()[0]
    assert first.startswith("#!"), first
    return first.removeprefix("#!").split()


def test_script_uses_system_python_without_site(build: Build) -> None:
    """The launcher as dh_python3 leaves it: Debian's python3 with -S (debian/rules
    override_dh_python3), whichever dh-python built it; the rest is tools/daytime-sd."""
    script = deb_file(build.deb, "/usr/sbin/daytime-sd").decode()
    assert shebang(script) == ["/usr/bin/python3", "-S"], script.splitlines()[0]
    source = (build.tree / "tools" / "daytime-sd").read_text()
    assert script.splitlines()[1:] == source.splitlines()[1:]


def test_units_and_manpage_are_the_sources(build: Build) -> None:
    for unit in source_units(build.tree):
        shipped = deb_file(build.deb, f"{UNIT_DIR}/{unit}")
        assert shipped == (build.tree / "systemd" / unit).read_bytes(), unit
    man = gzip.decompress(deb_file(build.deb, "/usr/share/man/man8/daytime-sd.8.gz"))
    assert man == (build.tree / "man" / "daytime-sd.8").read_bytes()


@pytest.fixture(scope="module")
def unpacked(build: Build, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unpacked")
    subprocess.run(["dpkg-deb", "--extract", str(build.deb), str(root)], check=True)
    return root


@pytest.mark.parametrize(("arg", "expect"), [("--version", f"daytime-sd {VERSION}\n")])
def test_installed_script_runs(unpacked: Path, arg: str, expect: str) -> None:
    env = {
        "PATH": SYSTEM_PATH,
        "PYTHONPATH": str(unpacked / PRIVATE_DIR.lstrip("/")),
        "LC_ALL": "C.UTF-8",
    }
    proc = subprocess.run(
        [str(unpacked / "usr/sbin/daytime-sd"), arg],
        cwd=unpacked,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, expect, "")


@pytest.fixture(scope="module")
def control(build: Build, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("control")
    subprocess.run(["dpkg-deb", "--control", str(build.deb), str(path)], check=True)
    return path


STUB = """#!/bin/sh
# Records its calls; deb-systemd-helper keeps a tiny enablement state like the real one.
echo "$(basename "$0") $*" >> "$STUB_LOG"
[ "$(basename "$0")" = deb-systemd-helper ] || exit 0
[ "$1" = --quiet ] && shift
case "$1" in
    enable) shift; for unit; do touch "$STUB_STATE/$unit"; done ;;
    update-state) shift; for unit; do touch "$STUB_STATE/$unit.state"; done ;;
    debian-installed) [ -e "$STUB_STATE/$2.state" ] || [ -e "$STUB_STATE/$2" ] ;;
    was-enabled) exit 0 ;;  # the real default on first installation
esac
"""


@pytest.fixture
def stubbed_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("deb-systemd-helper", "deb-systemd-invoke", "systemctl", "py3compile"):
        (bindir / name).write_text(STUB)
        (bindir / name).chmod(0o755)
    (tmp_path / "state").mkdir()
    yield {
        "PATH": f"{bindir}:{SYSTEM_PATH}",
        "STUB_LOG": str(tmp_path / "log"),
        "STUB_STATE": str(tmp_path / "state"),
        "DPKG_MAINTSCRIPT_PACKAGE": "daytime-sd",
    }


def test_postinst_enables_only_daytime_socket(control: Path, stubbed_env: dict[str, str]) -> None:
    subprocess.run(
        ["sh", "-e", str(control / "postinst"), "configure", ""], env=stubbed_env, check=True
    )
    calls = Path(stubbed_env["STUB_LOG"]).read_text().splitlines()
    enabled = {c.split()[-1].strip("'") for c in calls if c.startswith("deb-systemd-helper enable")}
    assert enabled == {"daytime.socket"}, calls
    # The units that are not enabled are still registered, so that purge cleans up after them.
    state = {p.name for p in Path(stubbed_env["STUB_STATE"]).iterdir()}
    assert {"daytime.service.state", "daytime-udp.socket.state", "daytime-udp.service.state"} <= (
        state
    )


def quoted_units(script: str, command: str) -> set[str]:
    units: set[str] = set()
    for match in re.finditer(re.escape(command) + r"((?: '[^']+')+)", script):
        units.update(re.findall(r"'([^']+)'", match.group(1)))
    return units


def test_remove_stops_and_purge_cleans_every_unit(build: Build, control: Path) -> None:
    non_template = {u for u in source_units(build.tree) if "@" not in u}
    prerm = (control / "prerm").read_text()
    assert '[ "$1" = remove ]' in prerm
    assert quoted_units(prerm, "deb-systemd-invoke stop") == non_template
    postrm = (control / "postrm").read_text()
    assert quoted_units(postrm, "deb-systemd-helper purge") == non_template
    postinst = (control / "postinst").read_text()
    # The sockets are started (only if enabled, which deb-systemd-invoke checks) and left
    # listening across an upgrade; the services are restarted after one, if running.
    sockets = {u for u in non_template if u.endswith(".socket")}
    assert quoted_units(postinst, "deb-systemd-invoke start") == sockets
    assert quoted_units(postinst, "deb-systemd-invoke $_dh_action") == non_template - sockets
    assert quoted_units(postinst, "deb-systemd-invoke restart") == set()


MAINTSCRIPT_TOOL = re.compile(r"deb-systemd-(?:helper|invoke)((?: --\S+)*) (\S+)((?: '[^']+')+)")


def unit_actions(script: str) -> Counter[tuple[str, str]]:
    """(action, unit) -> how many times the script names that action on that unit, e.g.
    ("deb-systemd-helper purge", "daytime.socket"): each block debhelper adds names its units
    once per action, so a count of 2 is a duplicate snippet."""
    counts: Counter[tuple[str, str]] = Counter()
    for match in MAINTSCRIPT_TOOL.finditer(script):
        tool = match.group(0).split()[0]
        for unit in re.findall(r"'([^']+)'", match.group(3)):
            counts[(f"{tool} {match.group(2)}", unit)] += 1
    return counts


def autoscript_blocks(script: str) -> list[str]:
    return re.findall(r"^# Automatically added by .*?^# End automatically added section", script,
                      re.M | re.S)  # fmt: skip


def check_no_duplicate_snippets(scripts: dict[str, str]) -> None:
    """No unit gets the same action twice in one maintainer script, and no two blocks are the
    same but debhelper's unit-less daemon-reload, one per dh_installsystemd call (3)."""
    for name, script in scripts.items():
        twice = {key: n for key, n in unit_actions(script).items() if n > 1}
        assert twice == {}, f"{name}: {twice}\n{script}"
        blocks = Counter(autoscript_blocks(script))
        repeated = {b: n for b, n in blocks.items() if n > 1}
        for block, n in repeated.items():
            assert "'" not in block and "daemon-reload" in block and n <= 3, f"{name}: {block}"


def test_maintainer_scripts_have_no_duplicate_snippets(control: Path) -> None:
    scripts = {n: (control / n).read_text() for n in ("preinst", "postinst", "prerm", "postrm")
               if (control / n).exists()}  # fmt: skip
    check_no_duplicate_snippets(scripts)
    # Every unit the package acts on is acted on: the counts above are not vacuous.
    assert unit_actions(scripts["postrm"])[("deb-systemd-helper purge", "daytime.socket")] == 1
    assert unit_actions(scripts["prerm"])[("deb-systemd-invoke stop", "daytime.socket")] == 1


def test_duplicate_snippets_are_caught() -> None:
    """The control: the scripts the three overlapping calls of 0.1.0 generated fail."""

    def block(line: str) -> str:
        added = "# Automatically added by dh_installsystemd"
        return f"{added}\n{line}\n# End automatically added section\n"

    both = block("deb-systemd-helper purge 'daytime-udp.socket' 'daytime.socket' >/dev/null")
    one = block("deb-systemd-helper purge 'daytime.socket' >/dev/null")
    with pytest.raises(AssertionError, match="purge"):
        check_no_duplicate_snippets({"postrm": both + one})
    reload = block("systemctl --system daemon-reload >/dev/null || true")
    check_no_duplicate_snippets({"postrm": reload * 3 + one})
    with pytest.raises(AssertionError):
        check_no_duplicate_snippets({"postrm": reload * 4})
