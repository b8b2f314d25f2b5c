# SPDX-License-Identifier: MIT
"""Real-systemd test rig: a Debian rootfs booted with systemd as PID 1 in systemd-nspawn.

Works on a host *without* systemd as PID 1 (hybrid or unified cgroups), as root.

API (stable; tests/e2e/test_units.py and tests/e2e/test_deb.py use it)::

    from .rig import REPO_ROOT, Container, RigUnavailable, ensure_rootfs

    rootfs = ensure_rootfs("trixie")  # cached rootfs of a release (RELEASES), built once
    with Container(rootfs) as ct:     # boots; `is-system-running --wait`; always cleaned up
        ct.install_from_tree(REPO_ROOT)            # as the .deb would, plus daemon-reload
        ct.run(["systemctl", "enable", "--now", "daytime.socket"])  # CompletedProcess[str]
        ct.systemctl("show", "-p", "StatusText", "--value", "daytime.service")  # -> stdout
        ct.write_file("/etc/systemd/system/daytime.socket.d/accept.conf", "[Socket]\\n...")
        ct.host_run(["python3", "client.py", ...])  # host binary, container net namespace
        ct.install_deb(Path("../daytime-sd_0.1.0-1_all.deb"))  # apt-get install -y /srv/...

``ensure_rootfs(release)``, ``ensure_rootfses(releases)``
    Returns the cache directory (default ``/var/cache/daytime-sd-tests/RELEASE``, override the
    parent with ``DAYTIME_E2E_CACHE``).  Built with ``debootstrap --variant=minbase``
    (``ROOTFS_PACKAGES``), then apt inside it (``TOOL_PACKAGES``: the release's build tools,
    lintian, autopkgtest, pytest), from the host's Debian mirror, read at run time from its apt
    sources (``DAYTIME_E2E_MIRROR`` overrides).  Built in a temporary directory and renamed into
    place, under a lock per release, so an interrupted build never leaves a half cache;
    ``ensure_rootfses`` builds several at once.  Containers boot it with
    ``--volatile=overlay``: the cache is never modified.  ``selected_releases()``: the releases
    the e2e tests prove, ``DAYTIME_E2E_RELEASES`` or ``DEFAULT_RELEASES``.

``Container(rootfs, *, private_network=True, binds_ro=None, name=None)``
    ``private_network=True`` (default): the container has its own network namespace with only
    ``lo``, so port 13 inside never clashes with the host or another container, and test
    clients reach it with ``host_run`` (host binary, container netns).  Apt then cannot
    download anything; ``install_deb`` needs no network as long as the package's
    dependencies are in ``ROOTFS_PACKAGES`` (python3, python3-systemd, python3-sdnotify).
    ``private_network=False`` shares the host network (apt can reach the mirror; port 13
    inside *is* the host's port 13).
    ``binds_ro``: ``{host_dir: container_dir}``, bound read-only at boot (``--bind-ro``).
    ``binds``: the same, read-write (``--bind``).  systemd >= 258 (``UNIFIED_ONLY_FROM``) boots
    with ``SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1``; ``systemd_version`` is the rootfs's.
    ``start()``/``stop()`` or use as a context manager.  ``stop()`` is idempotent and
    removes the nspawn process tree and the cgroup directories even after failures;
    ``cleanup_stale()`` (called by ``start()``) removes leftovers of killed earlier runs.

``Container.run(cmd, *, input=None, check=True, timeout=60)``
    Runs ``cmd`` in all namespaces of container PID 1 (``nsenter -t PID -a``) with a clean
    environment.  Raises ``CommandError`` (with stdout/stderr) on non-zero exit if ``check``.
``Container.systemctl(*args, check=True)`` -> stripped stdout.
``Container.write_file(path, text, mode=0o644)``, ``Container.put_file(host, path)``.
``Container.host_run(cmd, ...)`` runs a *host* command in the container's network namespace.
``Container.install_from_tree(repo_root)``: copies ``daytime_sd/`` to the package's private
    ``/usr/share/daytime-sd`` (byte-compiled, as dh_python3 does), writes
    ``/usr/sbin/daytime-sd`` (tools/daytime-sd, the launcher the .deb ships), copies
    ``systemd/*`` units to ``/usr/lib/systemd/system`` and runs ``systemctl daemon-reload``.
``Container.install_deb(path)``: ``apt-get install -y /srv/debs/NAME.deb`` (the file is bound
    or copied in first).
``Container.reset_daytime()``: stops/disables all daytime units, removes drop-ins,
    daemon-reload, reset-failed, ``mark_journal()``: a clean slate between tests sharing
    one container.  ``Container.journal(*args)``: ``journalctl -o cat`` since the mark.
``Container.query(proto, host, port=13)``: one TCP/UDP answer via loadclient.py (asserts).
``Container.client(*args)`` / ``client_popen(*args)``: loadclient.py, JSON result.
``listening(ct, port, proto="tcp")``: is anything listening on ``port`` in the container?
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import io
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_ROOT = Path(os.environ.get("DAYTIME_E2E_CACHE", "/var/cache/daytime-sd-tests"))
# Every release the project supports, oldest first: oldstable, stable, unstable.
RELEASES = ("bookworm", "trixie", "sid")
# What `make test` proves; `make test-unstable` sets DAYTIME_E2E_RELEASES=sid.
DEFAULT_RELEASES = ("bookworm", "trixie")
# debootstrap --include: what a booted system running the package needs.
ROOTFS_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-systemd",
    "python3-sdnotify",
)
# Installed with apt inside the new rootfs (debootstrap's own resolver cannot pick providers of
# virtual packages such as perl-openssl-abi-3): the release's own build tools and lintian for
# the in-release build, and what the .deb scenario and its autopkgtest use.
TOOL_PACKAGES = (
    "autopkgtest",
    "build-essential",
    "debhelper",
    "dh-python",
    "groff-base",
    "iproute2",
    "lintian",
    "man-db",
    "mandoc",
    "pybuild-plugin-pyproject",
    "python3-all",
    "python3-hypothesis",
    "python3-pytest",
    "python3-setuptools",
)
# Bump when the way the rootfs is prepared changes: a different stamp forces a rebuild.
ROOTFS_REVISION = "2"
NAME_PREFIX = "daytime-e2e-"
# The first systemd that boots only on the unified cgroup hierarchy (cgroup v1 support removed).
UNIFIED_ONLY_FROM = 258
LOADCLIENT = Path(__file__).with_name("loadclient.py")
HOST_PYTHON = "/usr/bin/python3"
# One answer of the service's default --format (ctime preset), CRLF-terminated.
CTIME_LINE = re.compile(r"[A-Z][a-z]{2} [A-Z][a-z]{2} \d{2} \d{2}:\d{2}:\d{2} \d{4}\r\n")
CT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UNITS = (
    "daytime.socket",
    "daytime.service",
    "daytime@.service",
    "daytime-udp.socket",
    "daytime-udp.service",
)
SBIN_SCRIPT = (REPO_ROOT / "tools" / "daytime-sd").read_text()  # the launcher the .deb installs


class RigUnavailable(RuntimeError):
    """The rig cannot run on this machine (the reason is the message)."""


class CommandError(RuntimeError):
    """A command in (or for) the container failed."""

    def __init__(self, cmd: Sequence[str], proc: subprocess.CompletedProcess[str]) -> None:
        super().__init__(
            f"command {list(cmd)!r} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
        self.proc = proc


def _log(msg: str) -> None:
    print(f"[rig] {msg}", file=sys.stderr, flush=True)


def check_host() -> None:
    """Raise RigUnavailable with the reason when the rig cannot run here."""
    if os.geteuid() != 0:
        raise RigUnavailable("needs root (systemd-nspawn, debootstrap, cgroup directories)")
    for tool in ("systemd-nspawn", "debootstrap", "nsenter"):
        if shutil.which(tool) is None:
            raise RigUnavailable(f"{tool} not found (see APT_PACKAGES in the Makefile)")
    if not _cgroup_roots():
        raise RigUnavailable("no usable cgroup hierarchy under /sys/fs/cgroup")


# --------------------------------------------------------------------------- mirror


def _deb822_stanzas(text: str) -> Iterator[dict[str, str]]:
    fields: dict[str, str] = {}
    key = ""
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if fields:
                yield fields
            fields, key = {}, ""
        elif raw[0] in " \t" and key:
            fields[key] += " " + raw.strip()
        elif ":" in raw:
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()


def apt_sources(etc_apt: Path = Path("/etc/apt")) -> list[tuple[str, list[str]]]:
    """(URI, suites) of every enabled binary `deb` source the host's apt uses."""
    found: list[tuple[str, list[str]]] = []
    one_line = [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*.list"))]
    for path in one_line:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    found.append((words[1], [words[2]]))
    for path in sorted((etc_apt / "sources.list.d").glob("*.sources")):
        with contextlib.suppress(OSError):
            for st in _deb822_stanzas(path.read_text()):
                if st.get("enabled", "yes").lower() == "no":
                    continue
                if "deb" not in st.get("types", "").split():
                    continue
                for uri in st.get("uris", "").split():
                    found.append((uri, st.get("suites", "").split()))
    return found


def find_mirror(suite: str) -> str:
    """The Debian mirror for `suite`, from the host's apt configuration (or DAYTIME_E2E_MIRROR).

    A source naming `suite` wins; otherwise the host's main archive (a source with a plain
    release suite such as ``bookworm``, not ``-security`` or ``-updates``): a Debian mirror
    serves every release, and this one is the archive the machine is set up to reach.
    """
    override = os.environ.get("DAYTIME_E2E_MIRROR")
    if override:
        return override
    sources = apt_sources()
    for uri, suites in sources:
        if suite in suites:
            return uri
    for uri, suites in sources:
        if any(s in (*RELEASES, "stable", "oldstable", "unstable") for s in suites):
            return uri
    raise RigUnavailable(
        f"no Debian archive among the apt sources in /etc/apt/sources.list{{,.d/*.list,"
        f".d/*.sources}} to debootstrap {suite!r} from; set DAYTIME_E2E_MIRROR"
    )


def selected_releases(
    variable: str = "DAYTIME_E2E_RELEASES", default: tuple[str, ...] = DEFAULT_RELEASES
) -> tuple[str, ...]:
    """The releases to prove: `variable` (comma-separated; tests/fresh reads
    DAYTIME_FRESH_RELEASES) or `default`."""
    raw = os.environ.get(variable, "")
    names = tuple(r.strip() for r in raw.split(",") if r.strip()) or default
    unknown = [r for r in names if r not in RELEASES]
    if unknown:
        raise ValueError(f"{variable}: unknown release(s) {unknown}; know {RELEASES}")
    return names


# --------------------------------------------------------------------------- rootfs cache


def mounts_under(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].replace("\\040", " ")
            if mnt == str(path) or mnt.startswith(prefix):
                out.append(mnt)
    return out


def _remove_tree(path: Path) -> None:
    """rm -rf that first unmounts whatever an interrupted debootstrap left mounted inside."""
    for mnt in sorted(mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", mnt], check=False, capture_output=True)
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stamp(release: str, include: Sequence[str], tools: Sequence[str]) -> str:
    return (
        f"suite={release} revision={ROOTFS_REVISION} packages={','.join(include)}"
        f" tools={','.join(tools)}\n"
    )


def _in_chroot(root: Path, script: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a shell script chrooted into a rootfs being built, /proc mounted for it."""
    (root / "proc").mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    try:
        return subprocess.run(
            [
                "chroot",
                str(root),
                "env",
                "-i",
                f"PATH={CT_PATH}",
                "LANG=C.UTF-8",
                "DEBIAN_FRONTEND=noninteractive",
                "sh",
                "-ec",
                script,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    finally:
        subprocess.run(["umount", "-l", str(root / "proc")], check=False)


def ensure_rootfs(
    release: str = "bookworm",
    cache_root: Path = CACHE_ROOT,
    *,
    name: str | None = None,
    include: Sequence[str] = ROOTFS_PACKAGES,
    tools: Sequence[str] = TOOL_PACKAGES,
) -> Path:
    """Return a ready rootfs directory of `release`, building it (atomically, under a lock of
    its own, so that several releases can be built at once) if needed.

    ``name`` (default: the release) is the cache directory's name, ``include`` what
    debootstrap installs and ``tools`` what apt installs after it (nothing when empty; the
    package lists are then left as debootstrap leaves them).  tests/fresh uses this for its
    pristine roots (``fresh-RELEASE``: minbase, git, make, ca-certificates, nothing else)."""
    check_host()
    if release not in RELEASES:
        raise ValueError(f"unknown release {release!r}")
    name = name or release
    final = cache_root / name
    stamp_name = ".daytime-e2e-stamp"
    stamp = _stamp(release, include, tools)
    cache_root.mkdir(parents=True, exist_ok=True)
    with open(cache_root / f".lock-{name}", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (final / stamp_name).is_file() and (final / stamp_name).read_text() == stamp:
                return final
        except OSError:
            pass
        # Leftovers of builds that were interrupted (their pid is in the name).
        for old in cache_root.glob(f"{name}.*-*"):
            pid = old.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not _pid_alive(int(pid)):
                _log(f"removing leftover {old}")
                _remove_tree(old)
        mirror = find_mirror(release)
        tmp = cache_root / f"{name}.tmp-{os.getpid()}"
        if tmp.exists():
            _remove_tree(tmp)
        _log(f"building {final} with debootstrap and apt from the host's Debian mirror")
        t0 = time.monotonic()
        try:
            proc = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(include)}",
                    release,
                    str(tmp),
                    mirror,
                ],
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
                # debootstrap and its children inherit the lock: should this process be
                # killed, the next run waits for the orphaned build to end before removing it.
                pass_fds=(lock.fileno(),),
            )
            if proc.returncode != 0:
                raise CommandError(["debootstrap", "...", release, mirror], proc)
            if tools:
                proc = _in_chroot(
                    tmp,
                    # A mirror may be a snapshot older than unstable's one-week Valid-Until;
                    # the signatures are still checked.
                    "apt-get -o Acquire::Check-Valid-Until=false update -q\n"
                    f"apt-get install -y -q --no-install-recommends {' '.join(tools)}\n"
                    # Nothing downloaded is needed any more; the lists would only go stale.
                    "apt-get clean\n"
                    "rm -rf /var/lib/apt/lists/*\n",
                    timeout=1200,
                )
                if proc.returncode != 0:
                    raise CommandError(["apt-get", "install", "...", *tools], proc)
            # A booted copy must get its own identity.
            (tmp / "etc/hostname").unlink(missing_ok=True)
            (tmp / "etc/machine-id").write_text("")
            (tmp / stamp_name).write_text(stamp)
            if final.exists():
                old = cache_root / f"{name}.old-{os.getpid()}"
                os.rename(final, old)
                os.rename(tmp, final)
                _remove_tree(old)
            else:
                os.rename(tmp, final)
        except BaseException:
            if tmp.exists():
                _remove_tree(tmp)
            raise
        _log(f"{name} rootfs ready in {time.monotonic() - t0:.0f} s")
        return final


def ensure_rootfses(releases: Sequence[str], cache_root: Path = CACHE_ROOT) -> dict[str, Path]:
    """Build every missing rootfs of `releases` at the same time (downloads and dpkg runs
    overlap), before any container boots, so that no build competes with a timed e2e test."""
    with ThreadPoolExecutor(max_workers=max(1, len(releases))) as pool:
        futures = {r: pool.submit(ensure_rootfs, r, cache_root) for r in releases}
        return {r: f.result() for r, f in futures.items()}


def systemd_version(rootfs: Path) -> int:
    """The major version of the systemd in a rootfs, from its shared library's file name."""
    for pattern in ("usr/lib/systemd", "usr/lib/*/systemd", "lib/systemd", "lib/*/systemd"):
        for lib in rootfs.glob(f"{pattern}/libsystemd-shared-*.so"):
            m = re.match(r"libsystemd-shared-(\d+)", lib.name)
            if m:
                return int(m.group(1))
    raise RigUnavailable(f"no libsystemd-shared-N.so in {rootfs}: is systemd installed?")


# --------------------------------------------------------------------------- cgroups


def _cgroup_roots() -> list[Path]:
    """Hierarchies nspawn needs a cgroup directory in: name=systemd and/or cgroup2."""
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():  # pure cgroup v2
        return [base]
    return [p for p in (base / "systemd", base / "unified") if (p / "cgroup.procs").exists()]


def _cgroup_pids(top: Path) -> list[int]:
    pids: list[int] = []
    for dirpath, _dirs, _files in os.walk(top):
        with contextlib.suppress(OSError):
            pids += [int(x) for x in (Path(dirpath) / "cgroup.procs").read_text().split()]
    return pids


def _remove_cgroup(top: Path, timeout: float = 10.0) -> None:
    """Kill whatever is left in `top`, then remove it bottom-up."""
    deadline = time.monotonic() + timeout
    while top.exists():
        for pid in _cgroup_pids(top):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
        if not top.exists():
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"cannot remove cgroup {top}: {_cgroup_pids(top)} still inside")
        time.sleep(0.05)


def cleanup_stale() -> None:
    """Remove cgroups (and their processes) of rig containers whose test run has died."""
    for root in _cgroup_roots():
        for d in root.glob(f"{NAME_PREFIX}*"):
            m = re.fullmatch(re.escape(NAME_PREFIX) + r"(\d+)-\d+", d.name)
            if m and not _pid_alive(int(m.group(1))):
                _log(f"removing stale cgroup {d}")
                _remove_cgroup(d)


# --------------------------------------------------------------------------- container

_counter = itertools.count()


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM (clean container poweroff) if the test run dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def _ns_pid_chain(pid: int) -> list[int]:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return [int(x) for x in line.split()[1:]]
    return []


def nspawn_command(rootfs: Path, name: str, clock_readable: bool = True) -> list[str]:
    """systemd-nspawn with the options every rig container has: a fresh overlay of `rootfs`
    (the cache is never written), no machined (--register=no) and the caller's cgroups
    (--keep-unit; see ``in_cgroups``), since systemd is not PID 1 on the host.

    nspawn's own seccomp filter refuses clock_adjtime(2) to a container without
    CAP_SYS_TIME, even the read-only call: ``clock_readable`` lets the read through, as on a
    real machine, so the shipped units' own filter is what is tested (the kernel still
    refuses every write without the capability); without it the container is as Docker and
    nspawn make them by default.
    """
    filters = ["--system-call-filter=clock_adjtime clock_adjtime64"] if clock_readable else []
    return [
        "systemd-nspawn",
        "--quiet",
        f"--directory={rootfs}",
        "--volatile=overlay",
        "--register=no",
        "--keep-unit",
        f"--machine={name}",
        *filters,
    ]


def in_cgroups(cgroups: Sequence[Path], cmd: Sequence[str]) -> list[str]:
    """`cmd` run from a shell that first moves itself into `cgroups` (made by the caller),
    so that whatever the container leaves behind can be found there, killed and removed."""
    enter = "".join(f'echo $$ > "{cg}/cgroup.procs" && ' for cg in cgroups)
    return ["/bin/sh", "-c", enter + 'exec "$@"', "sh", *cmd]


class Container:
    """One booted container; see the module docstring."""

    def __init__(
        self,
        rootfs: Path,
        *,
        private_network: bool = True,
        binds_ro: Mapping[Path, str] | None = None,
        binds: Mapping[Path, str] | None = None,
        name: str | None = None,
        clock_readable: bool = True,
    ) -> None:
        self.rootfs = rootfs
        self.clock_readable = clock_readable
        self.private_network = private_network
        self.binds_ro = dict(binds_ro or {})
        self.binds = dict(binds or {})
        self.name = name or f"{NAME_PREFIX}{os.getpid()}-{next(_counter)}"
        self.cgroups = [root / self.name for root in _cgroup_roots()]
        self.log_path = Path(f"/run/{self.name}.console.log")
        self._proc: subprocess.Popen[bytes] | None = None
        self._leader: int | None = None
        self._cursor: str | None = None
        self.systemd_version = systemd_version(rootfs)

    # -- lifecycle

    @property
    def leader(self) -> int:
        """Host PID of the container's PID 1 (systemd)."""
        if self._leader is None:
            raise RuntimeError("container not started")
        return self._leader

    def __enter__(self) -> Container:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, boot_timeout: float = 60.0) -> None:
        check_host()
        cleanup_stale()
        for cg in self.cgroups:
            cg.mkdir()
        cmd = [*nspawn_command(self.rootfs, self.name, self.clock_readable)]
        cmd += ["--boot", "--console=read-only"]
        if self.private_network:
            cmd.append("--private-network")
        for host_dir, ct_dir in self.binds_ro.items():
            cmd.append(f"--bind-ro={Path(host_dir).resolve()}:{ct_dir}")
        for host_dir, ct_dir in self.binds.items():
            cmd.append(f"--bind={Path(host_dir).resolve()}:{ct_dir}")
        env = dict(os.environ)
        if self.systemd_version >= UNIFIED_ONLY_FROM:
            # systemd >= 258 no longer boots on a hybrid (v1 + v2) cgroup hierarchy, which the
            # test hosts have; nspawn gives the container a pure cgroup2 tree when asked.
            env["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY"] = "1"
        try:
            with open(self.log_path, "wb") as log:
                self._proc = subprocess.Popen(
                    in_cgroups(self.cgroups, cmd),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            self._leader = self._wait_leader(boot_timeout)
            deadline = time.monotonic() + boot_timeout
            # "offline" or a connection error until PID 1 has its private socket up; after
            # that, --wait returns once the boot has finished.
            final = ("running", "degraded", "maintenance", "stopping")
            state, err = "", ""
            while state not in final and time.monotonic() < deadline:
                proc = self.run(
                    ["systemctl", "is-system-running", "--wait"], check=False, timeout=boot_timeout
                )
                state, err = proc.stdout.strip(), proc.stderr.strip()
                if state not in final:
                    time.sleep(0.05)
            if state not in ("running", "degraded"):
                raise RuntimeError(f"container did not boot: {state!r} {err}\n{self.console_log()}")
            if state == "degraded":
                failed = self.systemctl("--failed", "--no-legend", check=False)
                _log(f"{self.name} booted degraded: {failed}")
        except BaseException:
            try:
                self.stop()
            except Exception as e:  # keep the original error; report the cleanup one
                _log(f"cleanup after failed start: {e}")
            raise

    def _wait_leader(self, timeout: float) -> int:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"systemd-nspawn exited {self._proc.returncode}\n{self.console_log()}"
                )
            nspawn = self._proc.pid
            with contextlib.suppress(OSError):
                for task in os.listdir(f"/proc/{nspawn}/task"):
                    kids = Path(f"/proc/{nspawn}/task/{task}/children").read_text().split()
                    for kid in map(int, kids):
                        chain = _ns_pid_chain(kid)
                        if len(chain) >= 2 and chain[-1] == 1:
                            return kid
            time.sleep(0.02)
        raise RuntimeError(f"container PID 1 did not appear\n{self.console_log()}")

    def console_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        """Power the container off (SIGTERM to nspawn), escalate to SIGKILL, remove cgroups."""
        proc, self._proc, self._leader = self._proc, None, None
        errors: list[str] = []
        if proc is not None:
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                # nspawn turns SIGTERM into a clean poweroff request to the container's PID 1;
                # repeated because PID 1 ignores it until its handlers are installed.
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(min(2.0, max(0.0, deadline - time.monotonic())))
            if proc.poll() is None:
                errors.append("container did not power off in time; killed")
                for cg in self.cgroups:
                    for pid in _cgroup_pids(cg):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                proc.kill()
                proc.wait(10)
        for cg in self.cgroups:
            try:
                _remove_cgroup(cg)
            except RuntimeError as e:
                errors.append(str(e))
        self.log_path.unlink(missing_ok=True)
        if errors:
            raise RuntimeError("; ".join(errors))

    # -- commands

    def _nsenter(self) -> list[str]:
        return [
            "nsenter",
            f"--target={self.leader}",
            "--all",
            "env",
            "-i",
            f"PATH={CT_PATH}",
            "LANG=C.UTF-8",
            "SYSTEMD_PAGER=",
            "SYSTEMD_COLORS=0",
            "DEBIAN_FRONTEND=noninteractive",
        ]

    def run(
        self,
        cmd: Sequence[str],
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run `cmd` inside the container; raise CommandError on failure if `check`."""
        proc = subprocess.run(
            [*self._nsenter(), *cmd],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise CommandError(cmd, proc)
        return proc

    def popen(self, cmd: Sequence[str]) -> subprocess.Popen[str]:
        """Start `cmd` inside the container; its stdout and stderr are pipes (text)."""
        return subprocess.Popen(
            [*self._nsenter(), *cmd],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def systemctl(self, *args: str, check: bool = True, timeout: float = 60.0) -> str:
        return self.run(["systemctl", *args], check=check, timeout=timeout).stdout.strip()

    def host_run(
        self, cmd: Sequence[str], *, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a host command inside the container's network namespace only."""
        full = ["nsenter", f"--net=/proc/{self.leader}/ns/net", "--", *cmd]
        proc = subprocess.run(
            full,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise CommandError(full, proc)
        return proc

    # -- test clients (loadclient.py, host python3, container network namespace)

    def client(self, *args: str, timeout: float = 120.0) -> dict[str, object]:
        """Run ``loadclient.py ARGS`` and return its JSON result (see loadclient.py)."""
        proc = self.host_run([HOST_PYTHON, str(LOADCLIENT), *args], timeout=timeout)
        result = json.loads(proc.stdout)
        assert isinstance(result, dict), proc.stdout
        return result

    def client_popen(self, *args: str) -> subprocess.Popen[str]:
        """Start ``loadclient.py ARGS`` in the background; read its JSON from stdout."""
        return subprocess.Popen(
            [
                "nsenter",
                f"--net=/proc/{self.leader}/ns/net",
                "--",
                HOST_PYTHON,
                str(LOADCLIENT),
                *args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def query(self, proto: str, host: str, port: int = 13, timeout: float = 10.0) -> str:
        """One TCP connection or UDP datagram; the answer, or AssertionError with the error."""
        result = self.client(proto, host, str(port), "--timeout", str(timeout))
        assert result["ok"], f"{proto} query to {host}:{port} failed: {result}"
        data = result["data"]
        assert isinstance(data, str)
        return data

    def write_file(self, path: str, text: str, mode: int = 0o644) -> None:
        script = 'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1"'
        self.run(["sh", "-c", script, "sh", path, f"{mode:o}"], input=text)

    def _put_bytes(self, path: str, data: bytes, mode: int = 0o644) -> None:
        script = 'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1"'
        cmd = [*self._nsenter(), "sh", "-c", script, "sh", path, f"{mode:o}"]
        proc = subprocess.run(cmd, input=data, capture_output=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"copying to {path} failed: {proc.stderr.decode(errors='replace')}")

    def put_file(self, host_path: Path, path: str, mode: int = 0o644) -> None:
        """Copy a host file into the container (which may be on a private tmpfs path)."""
        self._put_bytes(path, Path(host_path).read_bytes(), mode)

    def _put_tree(self, repo_root: Path, names: Sequence[str], dest: str) -> None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name in names:
                tar.add(
                    repo_root / name,
                    arcname=name,
                    filter=lambda ti: None if "__pycache__" in ti.name else ti,
                )
        cmd = [*self._nsenter(), "sh", "-c", 'mkdir -p "$1" && tar -xf - -C "$1"', "sh", dest]
        proc = subprocess.run(
            cmd, input=buf.getvalue(), capture_output=True, timeout=120, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"unpacking into {dest} failed: {proc.stderr.decode(errors='replace')}"
            )

    # -- installing the project

    def install_from_tree(self, repo_root: Path = REPO_ROOT) -> None:
        """Install package, script and units from a source tree the way the .deb does."""
        self._put_tree(repo_root, ["daytime_sd", "systemd"], "/srv/tree")
        self.write_file("/usr/sbin/daytime-sd", SBIN_SCRIPT, 0o755)
        self.run(
            [
                "sh",
                "-ec",
                "rm -rf /usr/share/daytime-sd/daytime_sd\n"
                "mkdir -p /usr/share/daytime-sd\n"
                "cp -r /srv/tree/daytime_sd /usr/share/daytime-sd/\n"
                # dh_python3's py3compile does this at install time; without it every
                # Accept=yes instance would compile the package again (DynamicUser cannot
                # write __pycache__).
                "python3 -m compileall -q /usr/share/daytime-sd/daytime_sd\n"
                # /usr/lib/systemd/system: where systemd >= 255 looks (and 252 on merged /usr).
                "install -m 0644 -t /usr/lib/systemd/system /srv/tree/systemd/*\n"
                "systemctl daemon-reload\n",
            ]
        )

    def install_deb(self, deb: Path) -> subprocess.CompletedProcess[str]:
        """`apt-get install -y` a .deb file (bound in already, or copied to /srv/debs)."""
        deb = Path(deb).resolve()
        ct_path = None
        for host_dir, ct_dir in self.binds_ro.items():
            with contextlib.suppress(ValueError):
                ct_path = f"{ct_dir.rstrip('/')}/{deb.relative_to(Path(host_dir).resolve())}"
                break
        if ct_path is None:
            ct_path = f"/srv/debs/{deb.name}"
            self.put_file(deb, ct_path)
        return self.run(
            ["apt-get", "install", "-y", "--no-install-recommends", ct_path], timeout=300
        )

    def reset_daytime(self) -> None:
        """Stop and disable every daytime unit, drop drop-ins: clean slate between tests."""
        self.run(
            [
                "sh",
                "-c",
                "systemctl stop 'daytime*.socket' 'daytime*.service' 'daytime@*.service'\n"
                "systemctl disable daytime.socket daytime-udp.socket 2>/dev/null\n"
                "rm -rf /etc/systemd/system/daytime*.d /run/systemd/system/daytime*.d\n"
                "systemctl daemon-reload\n"
                "systemctl reset-failed\n",
            ],
            timeout=60,
        )
        self.mark_journal()

    def mark_journal(self) -> None:
        """From now on, ``journal()`` shows only entries written after this point."""
        out = self.run(["journalctl", "--no-pager", "-n", "0", "--show-cursor"]).stdout
        m = re.search(r"^-- cursor: (\S+)", out, re.M)
        self._cursor = m.group(1) if m else None

    def journal(self, *args: str) -> str:
        """``journalctl -o cat ARGS`` since the last ``mark_journal()``/``reset_daytime()``."""
        since = [f"--after-cursor={self._cursor}"] if self._cursor else []
        return self.run(["journalctl", "--no-pager", "-o", "cat", *since, *args]).stdout

    def unit_show(self, unit: str, *props: str) -> dict[str, str]:
        args = [f"--property={p}" for p in props]
        out = self.systemctl("show", *args, unit)
        result: dict[str, str] = {}
        for line in out.splitlines():
            key, _, value = line.partition("=")
            result[key] = value
        return result

    def wait_for(
        self,
        what: str,
        predicate: Callable[[], bool],
        timeout: float = 15.0,
        interval: float = 0.1,
    ) -> None:
        """Poll `predicate()` until true; raise AssertionError naming `what` on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(interval)


def listening(ct: Container, port: int, proto: str = "tcp") -> bool:
    """Is something listening on `port` in the container's network namespace?"""
    path = f"/proc/{ct.leader}/net/{proto}"
    want = f":{port:04X}"
    state = "0A" if proto.startswith("tcp") else "07"  # TCP_LISTEN / UDP unconnected
    found = False
    for p in (path, path + "6"):
        try:
            with open(p) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[1].endswith(want) and cols[3] == state:
                        found = True
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
    return found
