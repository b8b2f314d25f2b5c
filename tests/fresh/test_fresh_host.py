# SPDX-License-Identifier: MIT
"""README's set-up on a fresh Debian 12 and a fresh Debian 13 (`make test-fresh`).

README promises that `make run` and `make test` work on a fresh machine, installing what they
use themselves.  The machine the tests run on is not fresh (it has build-essential, libevent,
a pip cache, ...), so this test makes one per release in DAYTIME_FRESH_RELEASES (default
``bookworm,trixie``): a pristine debootstrap root, ``--variant=minbase`` plus git, make and
ca-certificates (what a new user has installed to clone the project and run make), cached
in ``/var/cache/daytime-sd-tests/fresh-RELEASE`` by the e2e rig's ``ensure_rootfs`` and never
modified: every run starts in it afresh through ``systemd-nspawn --volatile=overlay`` (not
booted; systemd is not PID 1 on a developer's machine either).  There, a ``git clone`` of the
committed HEAD runs, as root as README says: ``make deps``, ``make run`` answered by ``make
query``, ``make lint``, ``make unit``, ``make deb`` and the bench smoke test (with ``CI=1``:
no server of the bench may be skipped).  The e2e tests of ``make test`` (booted containers
inside the container) are not run there; ``make test`` runs them on the CI host.

The container shares the host's network (apt and pip download there), and gets the host's
registry set-up, never a host name written here: the apt sources are the host's Debian
mirror (``find_mirror``, as for the e2e roots), the host's apt ``Acquire::`` settings (proxy,
...) from ``/etc/apt/apt.conf.d``, local CAs from ``/usr/local/share/ca-certificates``, pip's
configuration files (``/etc/pip.conf``, ``/etc/xdg/pip``, ``~/.config/pip``, ``~/.pip``) and
``PIP_*`` and proxy variables, with the local directories they name bound read-only.

Not part of `make test` (about 4 minutes per release on 2 cores, half of it `make deps`; 2 more
the first time, to debootstrap the pristine roots); CI runs it after `make test`.
Without root, systemd-nspawn or debootstrap it skips saying why; under ``CI`` that is a
failure.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from e2e.rig import (
    CT_PATH,
    NAME_PREFIX,
    RELEASES,
    REPO_ROOT,
    RigUnavailable,
    _cgroup_roots,
    _die_with_parent,
    _remove_cgroup,
    check_host,
    cleanup_stale,
    ensure_rootfs,
    in_cgroups,
    nspawn_command,
    selected_releases,
)

# What a fresh machine has: debootstrap --variant=minbase plus these.
FRESH_PACKAGES = ("git", "make", "ca-certificates")
# The whole run of one release, apt downloads included.
RUN_TIMEOUT = 40 * 60
# Where the container finds the host's configuration (copied into place first) and the clone's
# origin.
HOST_CONFIG = "/srv/host-config"
ORIGIN = "/srv/origin.git"
# Directories a pip configuration may name that are the system's own: never bound.
SYSTEM_DIRS = {"/", "/bin", "/dev", "/etc", "/home", "/lib", "/proc", "/root", "/run", "/sbin"}
SYSTEM_DIRS |= {"/sys", "/tmp", "/usr", "/var"}

# The steps, in README's order; each line starting with STEP marks the start of one.
STEP = "=== step: "
SCRIPT = rf"""
set -eu
step() {{ echo "{STEP}$*"; }}
step copy the host registry configuration
cp -a {HOST_CONFIG}/files/. /
if [ -d /usr/local/share/ca-certificates ]; then update-ca-certificates >/dev/null; fi
step git clone
git clone -q {ORIGIN} /root/daytime-sd
cd /root/daytime-sd
git log --oneline -1
step make deps
make deps
step make run, make query
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')
setsid make run PORT="$port" >/tmp/make-run.log 2>&1 &
run=$!
answered=
for _ in $(seq 1 150); do
    if make -s query PORT="$port" >/tmp/answer 2>/dev/null; then answered=1; break; fi
    sleep 0.2
done
kill -TERM -- "-$run" 2>/dev/null || true
wait "$run" || true
cat /tmp/make-run.log
[ -n "$answered" ] || {{ echo "make query: no answer from make run on port $port"; exit 1; }}
cat /tmp/answer
grep -Eq '^[A-Z][a-z]{{2}} [A-Z][a-z]{{2}} [ 0-9][0-9] [0-9:]{{8}} [0-9]{{4}}' /tmp/answer
step make lint
make lint
step make unit
make unit
step make deb
make deb
step bench smoke
CI=1 .venv/bin/python -m pytest -q tests/integration/test_bench_smoke.py
echo "libraries bench/run.py fetched for the inetds:"
find bench/build/x-lib -name 'lib*.so.*' -type f -printf '  %f\n' 2>/dev/null | sort
step done
"""


def _require_rig() -> None:
    reason = ""
    try:
        check_host()
    except RigUnavailable as e:
        reason = f"a fresh root needs the e2e rig: {e}"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {reason}", pytrace=False)
        print(f"\nSKIP: {reason}", file=sys.stderr)
        pytest.skip(reason)


# --------------------------------------------------------------------------- host set-up


def _acquire_only(text: str) -> bool:
    """True if an apt.conf fragment sets nothing but Acquire:: options (proxies, mirror
    checks, index targets): how the host reaches its archive, and nothing about what to do
    with packages (hooks naming host tools, autoremove policy, ...)."""
    body = re.sub(r"(?m)^\s*(//|#).*$", "", text)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    statements = [s.strip() for s in re.split(r";\s*(?:};\s*)*", body) if s.strip()]
    return bool(statements) and all(s.startswith("Acquire") for s in statements)


def _pip_config_files(home: Path) -> dict[Path, str]:
    """pip's configuration files on the host -> where they go in the container (as root)."""
    found: dict[Path, str] = {}
    for host, ct in (
        (Path("/etc/pip.conf"), "/etc/pip.conf"),
        (Path("/etc/xdg/pip"), "/etc/xdg/pip"),
        (home / ".config/pip", "/root/.config/pip"),
        (home / ".pip", "/root/.pip"),
    ):
        if host.is_file():
            found[host] = ct
        elif host.is_dir():
            for f in sorted(p for p in host.rglob("*") if p.is_file()):
                found[f] = f"{ct}/{f.relative_to(host)}"
    conf = os.environ.get("PIP_CONFIG_FILE", "")
    if conf.startswith("/") and Path(conf).is_file():
        found[Path(conf)] = conf
    return found


def _local_paths(key: str, value: str) -> Iterator[Path]:
    """Local directories a pip setting names: the directory itself, or for an index URL the
    directory above it (a simple index links its files relative to itself)."""
    for word in value.split():
        path = word.removeprefix("file://") if word.startswith("file:///") else word
        if not path.startswith("/"):
            continue
        p = Path(path.rstrip("/") or "/")
        yield p.parent if "index" in key else p


def stage_host_config(dest: Path) -> tuple[list[str], dict[str, str]]:
    """Copy the host's registry configuration under ``dest/files`` (a tree copied over the
    container's /) and return (nspawn options binding the local directories it names
    read-only, environment to set in the container)."""
    files = dest / "files"
    files.mkdir(parents=True)

    def put(host: Path, ct: str) -> None:
        target = files / ct.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(host, target)

    for conf in [Path("/etc/apt/apt.conf"), *sorted(Path("/etc/apt/apt.conf.d").glob("*"))]:
        if conf.is_file() and _acquire_only(conf.read_text(errors="replace")):
            put(conf, f"/etc/apt/apt.conf.d/{conf.name}")
    local_cas = Path("/usr/local/share/ca-certificates")
    for ca in sorted(local_cas.rglob("*.crt")) if local_cas.is_dir() else []:
        put(ca, str(ca))
    env = {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
    for k in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        if k in os.environ:
            env[k] = os.environ[k]
    settings: list[tuple[str, str]] = [(k.lower(), v) for k, v in env.items()]
    for host, ct in _pip_config_files(Path.home()).items():
        put(host, ct)
        if host.suffix == ".conf" or host.name == "pip.ini":
            parser = configparser.ConfigParser(interpolation=None)
            try:
                parser.read(host)
            except configparser.Error:
                continue
            settings += [(k, v) for s in parser.sections() for k, v in parser.items(s)]
    binds = sorted(
        {
            p
            for key, value in settings
            for p in _local_paths(key, value)
            if p.is_dir() and str(p) not in SYSTEM_DIRS
        }
    )
    return [f"--bind-ro={p}" for p in binds], env


# --------------------------------------------------------------------------- the container


class Run:
    """One `bash -c SCRIPT` in a fresh overlay of `root` (systemd-nspawn, not booted); its
    output goes to `log`, and the steps as they start to the terminal."""

    def __init__(self, release: str, root: Path, log: Path, say: Callable[[str], None]) -> None:
        self.release, self.root, self.log = release, root, log
        self.name = f"{NAME_PREFIX}{os.getpid()}-{1000 + RELEASES.index(release)}"
        self.cgroups = [r / self.name for r in _cgroup_roots()]
        self.steps: list[tuple[str, float]] = []
        self.say = say

    def __call__(self, script: str, nspawn_opts: list[str], env: dict[str, str]) -> int:
        cleanup_stale()
        for cg in self.cgroups:
            cg.mkdir()
        cmd = [
            *nspawn_command(self.root, self.name),
            "--as-pid2",
            # Plain pipes, as CI has them (nspawn's default gives the command a pty).
            "--console=pipe",
            "--resolv-conf=copy-host",
            *nspawn_opts,
            f"--setenv=PATH={CT_PATH}",
            "--setenv=HOME=/root",
            *[f"--setenv={k}={v}" for k, v in sorted(env.items())],
            "/bin/bash",
            "-c",
            script,
        ]
        # In cgroups of its own, as the e2e rig's containers: whatever is left after a
        # timeout is killed and removed.
        proc = subprocess.Popen(
            in_cgroups(self.cgroups, cmd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        timer = threading.Timer(RUN_TIMEOUT, lambda: proc.send_signal(signal.SIGKILL))
        timer.start()
        t0 = time.monotonic()
        try:
            assert proc.stdout is not None
            with open(self.log, "wb") as log:
                for raw in proc.stdout:
                    log.write(raw)
                    log.flush()
                    line = raw.decode(errors="replace").rstrip("\n")
                    if line.startswith(STEP):
                        self._step(line.removeprefix(STEP), time.monotonic() - t0)
            return proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for cg in self.cgroups:
                _remove_cgroup(cg)

    def _step(self, name: str, at: float) -> None:
        if self.steps:
            prev, start = self.steps[-1]
            self.say(f"[fresh {self.release}] {prev}: {at - start:.0f} s")
        self.steps.append((name, at))

    def failed_step(self) -> str:
        return self.steps[-1][0] if self.steps else "(before the first step)"


RELEASES_UNDER_TEST = selected_releases("DAYTIME_FRESH_RELEASES", ("bookworm", "trixie"))


@pytest.fixture(scope="session")
def pristine_roots() -> dict[str, Path]:
    """The pristine root of every release under test, the missing ones built at once."""
    _require_rig()
    with ThreadPoolExecutor(max_workers=len(RELEASES_UNDER_TEST)) as pool:
        futures = {
            r: pool.submit(ensure_rootfs, r, name=f"fresh-{r}", include=FRESH_PACKAGES, tools=())
            for r in RELEASES_UNDER_TEST
        }
        return {r: f.result() for r, f in futures.items()}


@pytest.fixture(params=RELEASES_UNDER_TEST)
def release(request: pytest.FixtureRequest) -> str:
    name = request.param
    assert isinstance(name, str)
    return name


def test_readme_on_a_fresh_machine(
    release: str,
    pristine_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def say(msg: str) -> None:
        with capsys.disabled():
            print(msg, file=sys.stderr, flush=True)

    t0 = time.monotonic()
    root = pristine_roots[release]
    say(f"\n[fresh {release}] in a fresh overlay of {root}")
    origin = tmp_path / "origin.git"
    subprocess.run(
        ["git", "clone", "-q", "--bare", "--no-local", str(REPO_ROOT), str(origin)],
        check=True,
        capture_output=True,
    )
    binds, env = stage_host_config(tmp_path / "host")
    binds += [f"--bind-ro={origin}:{ORIGIN}", f"--bind-ro={tmp_path / 'host'}:{HOST_CONFIG}"]
    log = tmp_path / f"fresh-{release}.log"
    run = Run(release, root, log, say)
    status = run(SCRIPT, binds, env)
    say(f"[fresh {release}] {time.monotonic() - t0:.0f} s in all; log: {log}")
    tail = log.read_text(errors="replace")[-6000:]
    assert status == 0, f"{release}: step {run.failed_step()!r} failed (exit {status}):\n{tail}"
    assert run.failed_step() == "done", tail
