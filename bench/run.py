#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""`make bench`: daytime-sd side by side with C and inetd references, one run, one machine.

Builds the C load generator and reference servers into bench/build/, fetches
openbsd-inetd and xinetd as .debs (``apt-get download``, extracted with
``dpkg -x`` into bench/build/, nothing installed), then for every server runs
the load generator at concurrency 1, 8, 64 and 64 with 2 load threads, repeated,
and reports medians.  Also measures daytime-sd's time from start to READY=1 and
idle RSS (Accept=no), and compares Accept=yes with spawning a bare
``/usr/bin/python3 -c``.

Writes NAME.md (the tables), NAME.json (raw figures of every run) and NAME.png
(chart) to bench/results/ (NAME is ``latest``, or ``smoke`` with --smoke).  Their first
line after the title, and the last line on stdout, says whether the machine was quiet
(load average, other processes' CPU, steal: see QUIET_*); the figures of a run that was
NOT QUIET are not to be published.  Also costs, under this Python, the imports that
tests/integration/test_import_budget.py keeps off the per-connection path.

Rerun: ``make bench`` or ``.venv/bin/python bench/run.py [--duration S] [--repeats N]
[--servers a,b,...]``; ``--smoke`` is the 0.3-second, one-repeat version that
``make test`` runs (no targets asserted).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
BUILD = BENCH / "build"
RESULTS = BENCH / "results"
PYTHON = "/usr/bin/python3"
SSA = "systemd-socket-activate"
HOST = "127.0.0.1"
UDP_RATE = (
    1_000_000  # daytime-sd --udp-rate for the benchmark (its maximum; default 5/s per source)
)
CELLS: tuple[tuple[int, int], ...] = ((1, 1), (8, 1), (64, 1), (64, 2))
# --smoke (what `make test` runs so that the benchmark never rots): every server, every cell,
# this long each; enough to run every path, far too short for a figure.
SMOKE_SECONDS = 0.3
TARGET_CELL = (64, 2)
TALK_CELL = (8, 1)  # talkative clients (loadgen -w), first round only
TALK_NAME = "talk c=8"
C_PROGRAMS = ("loadgen", "cfork", "cepoll")
# What a bare per-connection Python spawn does: write one line and exit.
BARE_PY = "import os, time; os.write(1, (time.ctime() + '\\r\\n').encode())"

Json = dict[str, Any]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- build


def build_c(force: bool = False) -> None:
    BUILD.mkdir(parents=True, exist_ok=True)
    for name in C_PROGRAMS:
        src, exe = BENCH / f"{name}.c", BUILD / name
        if not force and exe.exists() and exe.stat().st_mtime >= src.stat().st_mtime:
            continue
        cmd = ["gcc", "-O2", "-Wall", "-Wextra", "-pthread", "-o", str(exe), str(src)]
        log(f"build: {' '.join(cmd)}")
        subprocess.run(cmd, check=True)


def _apt_download(pkgs: Sequence[str], update: bool) -> str | None:
    """apt-get download into BUILD; returns an error text or None.

    With ``update`` (and root), a failed download is retried after ``apt-get update``.
    """

    def attempt() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["apt-get", "download", *pkgs],
            cwd=BUILD,
            capture_output=True,
            text=True,
            timeout=120,
        )

    try:
        r = attempt()
        if r.returncode != 0 and update and os.geteuid() == 0:
            # Fresh machines may have no package lists yet.
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=180)
            r = attempt()
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    if r.returncode != 0:
        return (r.stderr.strip().splitlines() or ["apt-get download failed"])[-1]
    return None


def _missing_libraries(exe: Path, ldpath: str) -> list[str]:
    """The shared libraries (sonames) the dynamic linker cannot find for `exe`, per ldd(1)."""
    env = {**os.environ, "LD_LIBRARY_PATH": ldpath} if ldpath else None
    out = subprocess.run(
        ["ldd", str(exe)], capture_output=True, text=True, env=env, check=False
    ).stdout
    return [ln.split()[0] for ln in out.splitlines() if "=> not found" in ln]


def _library_packages(deb: Path) -> list[str]:
    """The library packages (``lib*``, first alternative) a .deb depends on and this system
    has not installed.  Their names differ between releases (bookworm's libevent-2.1-7 is
    trixie's libevent-2.1-7t64), so they are read from the .deb rather than listed here."""
    depends = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True, check=False
    ).stdout
    wanted = []
    for clause in depends.split(","):
        name = clause.split("|")[0].split("(")[0].strip().split(":")[0]
        if not name.startswith("lib"):
            continue
        status = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True
        ).stdout
        if not status.endswith(" installed"):
            wanted.append(name)
    return wanted


def _extracted_library_path() -> str:
    """LD_LIBRARY_PATH for the libraries extracted into bench/build/x-lib/ (or "")."""
    dirs = sorted({str(so.parent) for so in (BUILD / "x-lib").rglob("*.so*")})
    return ":".join(dirs)


def fetch_inetds(update: bool = True) -> tuple[dict[str, Path], dict[str, str], str]:
    """Fetch and extract openbsd-inetd and xinetd, and the libraries they need that the system
    lacks (libwrap0, libevent, libtirpc, ... on a fresh machine), all into bench/build/.

    Nothing is installed: a library is fetched when ldd(1) says the extracted daemon cannot
    find one, from the library packages its .deb depends on.  Returns (binaries found,
    {name: reason} for those missing, LD_LIBRARY_PATH to use).
    """
    BUILD.mkdir(parents=True, exist_ok=True)
    wanted = {
        "openbsd-inetd": BUILD / "x-openbsd-inetd/usr/sbin/inetd",
        "xinetd": BUILD / "x-xinetd/usr/sbin/xinetd",
    }
    pkgs = [p for p, exe in wanted.items() if not exe.exists()]
    missing: dict[str, str] = {}
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        pkgs = []
        missing = {p: "no apt-get/dpkg" for p, exe in wanted.items() if not exe.exists()}
    if pkgs:
        log(f"fetch: apt-get download {' '.join(pkgs)} (extracted into bench/build/)")
        err = _apt_download(pkgs, update)
        if err:
            log(f"fetch: failed: {err}")
        for p in pkgs:
            debs = sorted(BUILD.glob(f"{p}_*.deb"))
            if debs:
                subprocess.run(["dpkg", "-x", str(debs[-1]), str(BUILD / f"x-{p}")], check=True)
    found = {p: exe for p, exe in wanted.items() if exe.exists()}
    for p in wanted.keys() - found.keys():
        missing.setdefault(p, "could not fetch the .deb")
    # A library fetched may need another the system lacks (libtirpc3 needs Kerberos's
    # libgssapi-krb5-2): fetch the missing ones of every .deb fetched so far, until ldd is
    # content or nothing new is left to fetch.
    ldpath = _extracted_library_path()
    debs = [deb for p in found for deb in sorted(BUILD.glob(f"{p}_*.deb"))[-1:]]
    fetched: set[str] = set()
    while any(_missing_libraries(exe, ldpath) for exe in found.values()):
        libs = sorted({lib for deb in debs for lib in _library_packages(deb)} - fetched)
        if not libs:
            break
        fetched.update(libs)
        log(f"fetch: apt-get download {' '.join(libs)} (libraries, extracted into bench/build/)")
        err = _apt_download(libs, update)
        if err:
            log(f"fetch: failed: {err}")
        for lib in libs:
            for deb in sorted(BUILD.glob(f"{lib}_*.deb"))[-1:]:
                subprocess.run(["dpkg", "-x", str(deb), str(BUILD / "x-lib")], check=True)
                debs.append(deb)
        ldpath = _extracted_library_path()
    for p, exe in list(found.items()):
        unresolved = _missing_libraries(exe, ldpath)
        if unresolved:
            missing[p] = f"shared libraries not found: {', '.join(unresolved)}"
            del found[p]
    return found, missing, ldpath


# --------------------------------------------------------------------------- servers


def free_port(kind: str = "tcp") -> int:
    """A port free for both TCP and UDP on HOST."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind((HOST, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no free {kind} port")


@dataclass
class Server:
    key: str
    label: str
    proto: str  # "tcp" or "udp"
    group: str  # "daytime-sd" or "reference"
    argv: Callable[[int], list[str]]
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""
    spawn: bool = False  # one process per connection: slower to settle
    unavailable: str = ""


PYCACHE = BUILD / "pycache"


def py_env() -> dict[str, str]:
    """Environment for daytime-sd under test: the repo's package, byte-compiled.

    An installed package has fresh .pyc files (py3compile); a work tree may have stale
    ones and PYTHONDONTWRITEBYTECODE set, and then every process per connection would
    compile the sources again.  So the Python processes under test keep their byte code
    in bench/build/pycache (PYTHONPYCACHEPREFIX, which then holds the standard library's
    too), leaving daytime_sd/ alone; precompile() fills it before the first cell.
    """
    return {"PYTHONPATH": str(REPO), "PYTHONPYCACHEPREFIX": str(PYCACHE)}


def server_environ(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def precompile() -> None:
    """Byte-compile daytime_sd and what it imports (standard library included)."""
    env = server_environ(py_env())
    warm = "import daytime_sd.cli, daytime_sd.server, daytime_sd.notify, runpy, importlib.util"
    for cmd in (
        [PYTHON, "-m", "compileall", "-q", str(REPO / "daytime_sd")],
        [PYTHON, "-c", warm],
        [PYTHON, "-m", "daytime_sd", "--version"],
        [PYTHON, "-c", BARE_PY],
    ):
        subprocess.run(cmd, env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def _sd_env() -> list[str]:
    """systemd-socket-activate passes on only a few variables: hand ours over."""
    return [x for k, v in py_env().items() for x in ("-E", f"{k}={v}")]


def daytime_sd_available() -> str:
    if not (REPO / "daytime_sd" / "__main__.py").exists():
        return "daytime_sd/__main__.py not there yet"
    try:
        r = subprocess.run(
            [PYTHON, "-m", "daytime_sd", "--version"],
            cwd=REPO,
            env={**os.environ, **py_env()},
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"python3 -m daytime_sd --version: {e}"
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["?"])[-1]
        return f"python3 -m daytime_sd --version failed: {tail}"
    return ""


def run_scratch() -> Path:
    """A directory of this run's own under bench/build for the inetds' configuration and
    logs, removed when the run ends."""
    BUILD.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=BUILD))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return scratch


def make_servers(
    inetds: dict[str, Path],
    inetd_missing: dict[str, str],
    ldpath: str,
    dsd_missing: str,
    scratch: Path,
) -> list[Server]:
    cepoll, cfork = str(BUILD / "cepoll"), str(BUILD / "cfork")
    have_ssa = shutil.which(SSA) is not None
    ssa_missing = "" if have_ssa else f"{SSA} not found (Debian package systemd)"
    servers: list[Server] = []

    servers.append(
        Server(
            "c-epoll",
            "C epoll (bench/cepoll.c)",
            "tcp",
            "reference",
            lambda p: [cepoll, "-l", HOST, str(p)],
            note="one process, epoll, accept4/write/close",
        )
    )
    servers.append(
        Server(
            "py-epoll",
            "bare Python epoll loop (bench/pyepoll.py)",
            "tcp",
            "reference",
            lambda p: [PYTHON, "-S", str(REPO / "bench" / "pyepoll.py"), HOST, str(p)],
            env=py_env(),
            note="python3 -S: cepoll.c's loop with the line and FIN in one segment and the "
            "close a round later (no linger bound, no timers); the CPython floor in-process",
        )
    )
    servers.append(
        Server(
            "c-fork",
            "C fork per connection (bench/cfork.c)",
            "tcp",
            "reference",
            lambda p: [cfork, "-l", HOST, str(p)],
            note="getaddrinfo/bind/listen, accept, fork, write, exit",
        )
    )
    servers.append(
        Server(
            "py-fork",
            "bare Python fork per connection (bench/pyfork.py)",
            "tcp",
            "reference",
            lambda p: [PYTHON, "-S", str(REPO / "bench" / "pyfork.py"), HOST, str(p)],
            env=py_env(),
            note="python3 -S: accept, fork, child send+shutdown+_exit, parent closes at once "
            "(no linger); the CPython floor for fork per connection",
        )
    )

    # openbsd-inetd: internal services are looked up by their /etc/services name, so
    # it runs in a private mount namespace where a private copy of /etc/services maps
    # "daytime" to the benchmark port, and /run (its pid file) is a private tmpfs.
    inetd = inetds.get("openbsd-inetd")
    unshare = shutil.which("unshare")

    def inetd_argv(port: int) -> list[str]:
        assert inetd is not None and unshare is not None
        d = scratch / f"inetd-{port}"
        d.mkdir(exist_ok=True)
        svc = Path("/etc/services").read_text(encoding="utf-8", errors="replace")
        lines = [ln for ln in svc.splitlines() if ln.split()[:1] != ["daytime"]]
        lines += [f"daytime\t\t{port}/tcp", f"daytime\t\t{port}/udp"]
        (d / "services").write_text("\n".join(lines) + "\n")
        (d / "inetd.conf").write_text(
            f"{HOST}:daytime\tstream\ttcp4\tnowait.100000000\troot\tinternal\n"
        )
        script = (
            "mount -t tmpfs tmpfs /run && "
            f'mount --bind "{d}/services" /etc/services && '
            f'exec "{inetd}" -i -q 4096 -R 100000000 "{d}/inetd.conf"'
        )
        return [unshare, "--mount", "--propagation", "private", "sh", "-c", script]

    servers.append(
        Server(
            "openbsd-inetd",
            "openbsd-inetd built-in daytime",
            "tcp",
            "reference",
            inetd_argv,
            env={"LD_LIBRARY_PATH": ldpath} if ldpath else {},
            note="inetd -i -q 4096 -R 100000000, nowait.100000000 (defaults: 256/min "
            "per service then 10 min off, listen queue 128)",
            unavailable=(
                inetd_missing.get("openbsd-inetd", "")
                or ("" if unshare else "unshare(1) not found")
                or ("" if os.geteuid() == 0 else "needs root (private mount namespace)")
            ),
        )
    )

    xinetd = inetds.get("xinetd")

    def xinetd_argv(port: int) -> list[str]:
        assert xinetd is not None
        d = scratch / f"xinetd-{port}"
        d.mkdir(exist_ok=True)
        (d / "xinetd.conf").write_text(
            "defaults\n{\n"
            "\tlog_on_success =\n\tlog_on_failure = HOST\n"
            "\tinstances = UNLIMITED\n\tper_source = UNLIMITED\n\tcps = 100000000 1\n}\n"
            "service daytime\n{\n"
            "\ttype = INTERNAL UNLISTED\n\tid = daytime-stream\n\tsocket_type = stream\n"
            f"\tprotocol = tcp\n\tport = {port}\n\tbind = {HOST}\n\twait = no\n"
            "\tuser = root\n}\n"
        )
        return [
            str(xinetd),
            "-dontfork",
            "-stayalive",
            "-filelog",
            str(d / "xinetd.log"),
            "-f",
            str(d / "xinetd.conf"),
        ]

    servers.append(
        Server(
            "xinetd",
            "xinetd built-in daytime",
            "tcp",
            "reference",
            xinetd_argv,
            env={"LD_LIBRARY_PATH": ldpath} if ldpath else {},
            note="xinetd -dontfork; cps = 100000000 1, instances = per_source = UNLIMITED "
            "(defaults: cps 50 10, Debian's instances 60); listen backlog is xinetd's own 64",
            unavailable=inetd_missing.get("xinetd", ""),
        )
    )

    # Every daytime-sd row runs the launcher the deb installs as /usr/sbin/daytime-sd
    # (#!/usr/bin/python3 -S), with PYTHONPATH pointing at this tree.
    launcher = [str(REPO / "tools" / "daytime-sd")]
    bare = [PYTHON, "-c", BARE_PY]
    servers.append(
        Server(
            "dsd-inproc",
            "daytime-sd Accept=no, in-process",
            "tcp",
            "daytime-sd",
            lambda p: [SSA, "-l", f"{HOST}:{p}", *_sd_env(), *launcher],
            note=f"{SSA} -l {HOST}:PORT tools/daytime-sd",
            unavailable=dsd_missing or ssa_missing,
        )
    )
    servers.append(
        Server(
            "dsd-fork",
            "daytime-sd standalone, fork",
            "tcp",
            "daytime-sd",
            lambda p: [*launcher, "--listen", HOST, "--port", str(p), "--fork"],
            env=py_env(),
            note="tools/daytime-sd --listen 127.0.0.1 --port PORT --fork",
            unavailable=dsd_missing,
        )
    )
    servers.append(
        Server(
            "dsd-accept",
            "daytime-sd Accept=yes (process per connection)",
            "tcp",
            "daytime-sd",
            lambda p: [SSA, "--accept", "--inetd", "-l", f"{HOST}:{p}", *_sd_env(), *launcher],
            note=f"{SSA} --accept --inetd -l {HOST}:PORT tools/daytime-sd (the launcher the "
            "deb installs as /usr/sbin/daytime-sd: #!/usr/bin/python3 -S)",
            spawn=True,
            unavailable=dsd_missing or ssa_missing,
        )
    )
    servers.append(
        Server(
            "py-spawn",
            "bare python3 -c per connection",
            "tcp",
            "reference",
            lambda p: [SSA, "--accept", "--inetd", "-l", f"{HOST}:{p}", *_sd_env(), *bare],
            note=f"{SSA} --accept --inetd ... /usr/bin/python3 -c {BARE_PY!r}",
            spawn=True,
            unavailable=ssa_missing,
        )
    )
    servers.append(
        Server(
            "dsd-udp",
            "daytime-sd UDP (replies/s)",
            "udp",
            "daytime-sd",
            lambda p: [
                SSA,
                "--datagram",
                "-l",
                f"{HOST}:{p}",
                *_sd_env(),
                *launcher,
                "--udp-rate",
                str(UDP_RATE),
            ],
            note=f"{SSA} --datagram ... --udp-rate {UDP_RATE} (default 5 per source per s)",
            unavailable=dsd_missing or ssa_missing,
        )
    )
    servers.append(
        Server(
            "c-epoll-udp",
            "C epoll UDP (replies/s)",
            "udp",
            "reference",
            lambda p: [cepoll, "-u", "-l", HOST, str(p)],
            note="recvfrom/sendto loop; openbsd-inetd's UDP daytime ignores loopback "
            "sources, so it cannot be measured here",
        )
    )
    return servers


def probe(proto: str, port: int, timeout: float = 0.5) -> bool:
    try:
        if proto == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.settimeout(timeout)
                u.connect((HOST, port))
                u.send(b"\n")
                return u.recv(512).endswith(b"\r\n")
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            data = b""
            while chunk := s.recv(512):
                data += chunk
            return data.endswith(b"\r\n")
    except OSError:
        return False


def proc_status(pid: int, field: str) -> int:
    """A number from /proc/PID/status (VmRSS in kB, a count of context switches, ...)."""
    for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
        if ln.startswith(f"{field}:"):
            return int(ln.split()[1])
    raise OSError(f"no {field} for {pid}")


def proc_sleeps(pid: int) -> int:
    """How often pid has slept so far: its voluntary context switches (an event loop's
    epoll_wait that found nothing ready, mostly); 0 once it is gone."""
    try:
        return proc_status(pid, "voluntary_ctxt_switches")
    except OSError:
        return 0


def proc_cpu(pid: int) -> float:
    """utime+stime+cutime+cstime of pid, in seconds (children count once reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running(srv: Server, port: int, logdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    logdir.mkdir(parents=True, exist_ok=True)
    env = server_environ(srv.env)
    with open(logdir / f"{srv.key}.log", "ab") as logf:
        proc = subprocess.Popen(
            srv.argv(port),
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 15
            while not probe(srv.proto, port):
                if proc.poll() is not None:
                    raise RuntimeError(f"{srv.key} exited with {proc.returncode} at start")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{srv.key} did not answer on port {port}")
                time.sleep(0.05)
            yield proc
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    # Anything left in the group (per-connection children) goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def settle(pid: int, grace: float = 1.0) -> None:
    """End the last cell's leftovers before the next: wait until pid has no children.

    Children still running after ``grace`` (per-connection processes whose client the
    load generator dropped at the end of the cell) are killed, by pid.
    """
    time.sleep(0.2)
    deadline = time.monotonic() + grace
    while _children(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(100):
        kids = _children(pid)
        if not kids:
            return
        for kid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(kid, signal.SIGKILL)
        time.sleep(0.05)


def loadgen(
    proto: str,
    port: int,
    conc: int,
    threads: int,
    duration: float,
    timeout_ms: int = 2000,
    talk: bool = False,
) -> Json:
    cmd = [str(BUILD / "loadgen"), "-c", str(conc), "-t", str(threads), "-d", str(duration)]
    cmd += ["-T", str(timeout_ms)]
    if proto == "udp":
        cmd.append("-u")
    if talk:
        cmd.append("-w")
    cmd += [HOST, str(port)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=True)
    result: Json = json.loads(r.stdout)
    return result


# --------------------------------------------------------------------------- a quiet machine?

# On a loaded machine every server runs at part speed and the ratios between them shrink
# towards 1 (issue 11: a published ratio above 1 was below 1 on a quiet machine).  So each
# run says whether the machine was quiet, and one that misses any of these thresholds is
# labelled NOT QUIET in its output (stdout, NAME.md, NAME.json) and must not be published:
QUIET_LOAD = 0.5  # 1-minute load average when run.py starts, before it has run anything
# CPU time of processes that are not the bench's, in % of all CPUs' time: in the sample
# before the run, over the whole run, and in every cell.
QUIET_OTHERS_PCT = 5.0
QUIET_STEAL_PCT = 1.0  # time the hypervisor gave to other guests, % of all CPUs' time
QUIET_SAMPLE_S = 2.0  # the sample before the first cell (0.5 s with --smoke)
PF_KTHREAD = 0x00200000  # /proc/PID/stat flags: a kernel thread


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


class CpuSnapshot:
    """The machine's CPU counters (/proc/stat) and the time used by processes not ours.

    Not ours: neither run.py nor its descendants (servers, their children, the load
    generator), nor kernel threads (they do the loopback work the bench itself causes).
    Each process's figure includes its reaped children, so the short-lived processes of
    another job (a compiler, a test run) show in the parent that reaped them.
    """

    __slots__ = ("at", "others", "stat")

    def __init__(self) -> None:
        self.at = time.monotonic()
        # user nice system idle iowait irq softirq steal (guest is counted in user)
        cpu = Path("/proc/stat").read_text().split("\n", 1)[0]
        self.stat = [int(x) for x in cpu.split()[1:9]]
        procs: dict[int, tuple[int, int, int]] = {}  # pid -> (ppid, flags, clock ticks)
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue  # gone meanwhile
            fields = text.rsplit(")", 1)[1].split()
            ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
            procs[int(entry)] = (int(fields[1]), int(fields[6]), ticks)
        kids: dict[int, list[int]] = {}
        for pid, (ppid, _flags, _ticks) in procs.items():
            kids.setdefault(ppid, []).append(pid)
        ours, todo = {os.getpid()}, [os.getpid()]
        while todo:
            for kid in kids.get(todo.pop(), []):
                ours.add(kid)
                todo.append(kid)
        self.others = sum(
            ticks
            for pid, (_ppid, flags, ticks) in procs.items()
            if pid not in ours and not flags & PF_KTHREAD
        )


def usage(a: CpuSnapshot, b: CpuSnapshot) -> Json:
    """What happened on the machine between two snapshots, in % of all CPUs' time."""
    total = sum(b.stat) - sum(a.stat)
    if total <= 0:
        return {"seconds": round(b.at - a.at, 2), "others_pct": 0.0, "steal_pct": 0.0,
                "busy_pct": 0.0, "others_ticks": 0, "steal_ticks": 0}  # fmt: skip
    idle = (b.stat[3] + b.stat[4]) - (a.stat[3] + a.stat[4])
    others, steal = max(0, b.others - a.others), b.stat[7] - a.stat[7]
    return {
        "seconds": round(b.at - a.at, 2),
        "others_pct": round(100 * others / total, 1),
        "steal_pct": round(100 * steal / total, 1),
        "busy_pct": round(100 * (total - idle) / total, 1),
        # In clock ticks (1/100 s, usually): one tick in a 0.3 s smoke cell is 1.7%.
        "others_ticks": others,
        "steal_ticks": steal,
    }


def tree_measured() -> str:
    """The commit of the daytime-sd this run measured, so a published result names its code.

    Untracked files are left out of "modified": a copy of this script run from an older tree
    (how the before of an issue is measured with today's method) does not change what runs.
    """

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True,
                              text=True, timeout=30, check=True).stdout.strip()  # fmt: skip

    try:
        commit = git("log", "-1", "--format=%h %cs")
        modified = git("status", "--porcelain", "--untracked-files=no", "--", "daytime_sd")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout, or no git)"
    return f"commit {commit}" + (", with uncommitted changes to daytime_sd/" if modified else "")


def quietness(load_start: float, before: Json, run: Json, raw: dict[str, Json]) -> Json:
    """The verdict, with its reasons, and the one line that says it."""
    cells = [
        (f"{key} {cell}", r["quiet"])
        for key, server in raw.items()
        for cell, runs in server.get("runs", {}).items()
        for r in runs
        if "quiet" in r
    ]
    noisy = [  # a single clock tick is not a verdict on a short cell
        f"{name} ({u['others_pct']:.0f}% others, {u['steal_pct']:.1f}% steal)"
        for name, u in cells
        if (u["others_pct"] > QUIET_OTHERS_PCT and u["others_ticks"] > 1)
        or (u["steal_pct"] > QUIET_STEAL_PCT and u["steal_ticks"] > 1)
    ]
    steal = max(before["steal_pct"], run["steal_pct"])
    reasons = []
    if load_start > QUIET_LOAD:
        reasons.append(f"load average {load_start:.2f} at the start > {QUIET_LOAD}")
    for when, u in (("before the run", before), ("over the run", run)):
        if u["others_pct"] > QUIET_OTHERS_PCT:
            reasons.append(
                f"other processes {u['others_pct']:.1f}% of the CPU {when} > {QUIET_OTHERS_PCT:g}%"
            )
    if steal > QUIET_STEAL_PCT:
        reasons.append(f"steal {steal:.1f}% > {QUIET_STEAL_PCT:g}%")
    if noisy:
        more = f", and {len(noisy) - 3} more" if len(noisy) > 3 else ""
        reasons.append(f"{len(noisy)} of {len(cells)} cells: {', '.join(noisy[:3])}{more}")
    figures = (
        f"load {load_start:.2f}, steal {steal:.1f}%, other processes "
        f"{before['others_pct']:.1f}% of the CPU before the run and {run['others_pct']:.1f}% "
        "over it"
    )
    if reasons:
        why = "; ".join(reasons)
        line = f"machine: NOT QUIET ({figures}) — do not publish these figures: {why}"
    else:
        line = f"machine: quiet ({figures})"
    return {
        "quiet": not reasons,
        "line": line,
        "reasons": reasons,
        "load_start": load_start,
        "load_end": load_average(),  # includes the bench's own load: for the record only
        "before": before,
        "run": run,
        "noisy_cells": noisy,
        "thresholds": {
            "load": QUIET_LOAD,
            "others_pct": QUIET_OTHERS_PCT,
            "steal_pct": QUIET_STEAL_PCT,
        },
    }


# --------------------------------------------------------------------------- measurements


def cell_name(conc: int, threads: int) -> str:
    return f"c={conc}" if threads == 1 else f"c={conc}x{threads}t"


# The order servers are measured in within a cell: each target's two sides next to each other
# (the best inetd, daytime-sd Accept=no and the bare epoll loop; the fork loops; the spawns).
# Quiet runs of one tree on this kind of VM moved a server's rate by up to 40% from one round to
# the next, so what a target compares is measured seconds apart, not minutes.
MEASURE_ORDER = (
    "c-epoll", "c-fork", "xinetd", "openbsd-inetd", "dsd-inproc", "py-epoll", "py-fork",
    "dsd-fork", "py-spawn", "dsd-accept", "dsd-udp", "c-epoll-udp",
)  # fmt: skip


def _measure(s: Server, proc: subprocess.Popen[bytes], port: int, cell: tuple[int, int, bool],
             duration: float, talk_s: float) -> Json:  # fmt: skip
    """One cell of load on one running server."""
    conc, threads, talk = cell
    cpu0, sleeps0 = proc_cpu(proc.pid), proc_sleeps(proc.pid)
    # A process per connection at c=64 takes seconds per connection.
    tmo = 15000 if s.spawn else 2000
    secs = talk_s if talk else duration
    snap = CpuSnapshot()
    res = loadgen(s.proto, port, conc, threads, secs, tmo, talk)
    res["quiet"] = usage(snap, CpuSnapshot())
    res["server_cpu_pct"] = round(100 * (proc_cpu(proc.pid) - cpu0) / res["duration_s"], 1)
    res["server_sleeps"] = proc_sleeps(proc.pid) - sleeps0  # the server process's own
    # Everything but the load generator, in % of one core: the server with all its children
    # (reaped or not), the kernel, other load.
    busy = res["machine"]["busy_pct"] * res["machine"]["cpus"]
    res["rest_cpu_pct"] = round(busy - res["cpu"]["pct_of_one_core"], 1)
    return res


def bench_servers(
    servers: list[Server], duration: float, repeats: int, logdir: Path, talk_s: float = 0.0
) -> dict[str, Json]:
    """Every server, every cell, ``repeats`` rounds.  In a round every server runs, each on
    its own port, and the cells go one at a time through all of them in MEASURE_ORDER, so
    the two sides of a target are measured seconds apart.  Each result records its round
    (``targets`` pairs the two sides round by round).

    With ``talk_s``, the first round adds one cell of talkative clients (TCP servers).
    """
    raw: dict[str, Json] = {
        s.key: {"label": s.label, "proto": s.proto, "group": s.group, "note": s.note, "runs": {}}
        for s in servers
    }
    for s in servers:
        if s.unavailable:
            raw[s.key]["skipped"] = s.unavailable
    order = {key: i for i, key in enumerate(MEASURE_ORDER)}
    active = sorted((s for s in servers if not s.unavailable),
                    key=lambda s: order.get(s.key, len(order)))  # fmt: skip
    for rnd in range(repeats):
        with contextlib.ExitStack() as stack:
            up: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
            for s in active:
                port = free_port()
                log(f"round {rnd + 1}/{repeats}: {s.key} on {HOST}:{port}")
                try:
                    up[s.key] = (stack.enter_context(running(s, port, logdir)), port)
                except (RuntimeError, OSError) as e:
                    log(f"  {s.key}: {e}")
                    raw[s.key].setdefault("failures", []).append(str(e))
            cells = [(c, t, False) for c, t in CELLS]
            if rnd == 0 and talk_s > 0:
                cells.append((*TALK_CELL, True))
            for cell in cells:
                name = TALK_NAME if cell[2] else cell_name(cell[0], cell[1])
                for s in active:
                    if s.key not in up or (cell[2] and s.proto != "tcp"):
                        continue
                    proc, port = up[s.key]
                    try:
                        res = _measure(s, proc, port, cell, duration, talk_s)
                        res["round"] = rnd
                        raw[s.key]["runs"].setdefault(name, []).append(res)
                        log(
                            f"  {s.key:>13} {name:>8}: {res['conn_per_s']:>9.1f}/s "
                            f"p99 {res['latency_us']['p99'] / 1000:.2f} ms "
                            f"errors {sum(res['errors'].values())}"
                        )
                        settle(proc.pid)
                        if proc.poll() is not None:
                            raise RuntimeError(f"{s.key} died ({proc.returncode})")
                    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
                        log(f"  {s.key}: {e}")
                        raw[s.key].setdefault("failures", []).append(str(e))
                        del up[s.key]
    return raw


def summarize(raw: dict[str, Json]) -> dict[str, Json]:
    """Medians over repeats per server and cell."""
    out: dict[str, Json] = {}
    for key, r in raw.items():
        cells: Json = {}
        for cell, runs in r["runs"].items():
            med = statistics.median
            cells[cell] = {
                "conn_per_s": med(x["conn_per_s"] for x in runs),
                "p50_ms": med(x["latency_us"]["p50"] for x in runs) / 1000,
                "p99_ms": med(x["latency_us"]["p99"] for x in runs) / 1000,
                "max_ms": med(x["latency_us"]["max"] for x in runs) / 1000,
                "connections": sum(x["connections"] for x in runs),
                "errors": {k: sum(x["errors"][k] for x in runs) for k in runs[0]["errors"]},
                "loadgen_cpu_pct": med(x["cpu"]["pct_of_one_core"] for x in runs),
                "server_cpu_pct": med(x["server_cpu_pct"] for x in runs),
                "total_us_per_conn": med(
                    (x["server_cpu_pct"] + x["cpu"]["pct_of_one_core"]) * 1e4 / x["conn_per_s"]
                    if x["conn_per_s"]
                    else 0.0
                    for x in runs
                ),
                "server_us_per_conn": med(
                    x["server_cpu_pct"] * 1e4 / x["conn_per_s"] if x["conn_per_s"] else 0.0
                    for x in runs
                ),
                "loadgen_us_per_conn": med(
                    x["cpu"]["pct_of_one_core"] * 1e4 / x["conn_per_s"] if x["conn_per_s"] else 0.0
                    for x in runs
                ),
                "server_sleeps_per_conn": med(
                    x["server_sleeps"] / x["connections"] if x["connections"] else 0.0 for x in runs
                ),
                "rest_cpu_pct": med(x["rest_cpu_pct"] for x in runs),
                "machine_busy_pct": med(x["machine"]["busy_pct"] for x in runs),
                "repeats": len(runs),
            }
        out[key] = cells
    return out


def _reap(pid: int, timeout: float = 5.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def time_to_ready(runs: int, idle_s: float) -> Json:
    """Start → READY=1 of the Accept=no service, on a real NOTIFY_SOCKET; idle RSS.

    Started the way systemd starts it: fork, listening socket as fd 3, LISTEN_FDS=1,
    LISTEN_PID, NOTIFY_SOCKET, exec the launcher the units run (tools/daytime-sd, installed
    as /usr/sbin/daytime-sd: python3 -S, so without site's start-up and memory; with
    ``python3 -m`` this measured a process the package never runs).  The clock runs from
    just before fork() to the READY=1 datagram.  (systemd-socket-activate would only
    exec the service at the first connection.)
    """
    times: list[float] = []
    rss: list[int] = []
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="dtbench-") as td:
        path = os.path.join(td, "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as ns:
            ns.bind(path)
            ns.settimeout(10)
            for i in range(runs + 1):  # the first run only warms caches
                lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                lsock.bind((HOST, 0))
                lsock.listen(socket.SOMAXCONN)
                port = int(lsock.getsockname()[1])
                env = {
                    k: v
                    for k, v in server_environ({}).items()
                    if not k.startswith(("LISTEN_", "NOTIFY_", "WATCHDOG_"))
                }
                env.update(py_env(), LISTEN_FDS="1", NOTIFY_SOCKET=path)
                argv = [str(REPO / "tools" / "daytime-sd")]
                lfd = lsock.fileno()
                t0 = time.monotonic()
                pid = os.fork()
                if pid == 0:  # child: only async-signal-safe-ish calls, then exec
                    try:
                        os.dup2(lfd, 3)
                        os.chdir(REPO)
                        env["LISTEN_PID"] = str(os.getpid())
                        os.execve(argv[0], argv, env)
                    finally:
                        os._exit(127)
                lsock.close()
                try:
                    got = False
                    while not got:
                        msg = ns.recv(4096)
                        got = b"READY=1" in msg.split(b"\n")
                    dt = time.monotonic() - t0
                    if i > 0:
                        times.append(dt)
                    if i == runs or i % 5 == 1:
                        time.sleep(idle_s)
                        probe("tcp", port)  # one answered connection, then idle again
                        time.sleep(idle_s / 2)
                        rss.append(proc_status(pid, "VmRSS"))  # kB
                except OSError as e:
                    errors.append(f"run {i}: {e!r}")
                finally:
                    _reap(pid)
    return {
        "runs": len(times),
        "ready_ms_median": statistics.median(times) * 1000 if times else None,
        "ready_ms_all": [round(t * 1000, 2) for t in times],
        "idle_rss_kb_median": statistics.median(rss) if rss else None,
        "idle_rss_kb_all": rss,
        "errors": errors,
    }


# What tests/integration/test_import_budget.py keeps off the per-connection path and out of
# the fork parent, and the package's own per-connection import, costed under this Python:
# the figures that source comments must not quote (they drift from one Python to the next).
IMPORT_COST_MODULES = (
    "socket", "enum", "typing", "re", "argparse", "dataclasses", "functools", "collections",
    "inspect", "logging", "subprocess", "threading", "systemd.daemon", "systemd.journal",
    "sdnotify", "daytime_sd.cli",
)  # fmt: skip
# In the child: resident pages before and after one import statement, and a mark on stderr
# that separates the interpreter's start-up imports from that statement's.
IMPORT_PROBE = (
    "import sys\n"
    "a = int(open('/proc/self/statm').read().split()[1])\n"
    "sys.stderr.write('-- mark --\\n'); sys.stderr.flush()\n"
    "import {module}\n"
    "b = int(open('/proc/self/statm').read().split()[1])\n"
    "print(b - a)\n"
)


def import_costs(runs: int) -> Json:
    """module -> median wall time of ``import module`` (-X importtime) and RSS it adds,
    under ``python3 -S`` with dist-packages on the path (as the launcher has it); plus what
    the site module costs a start (``python3 -c pass`` against ``python3 -S -c pass``)."""
    env = server_environ(py_env())
    env["PYTHONPATH"] += ":/usr/lib/python3/dist-packages"
    page_kb = os.sysconf("SC_PAGE_SIZE") / 1024
    out: Json = {}
    for module in IMPORT_COST_MODULES:
        ms: list[float] = []
        kb: list[float] = []
        argv = [PYTHON, "-S", "-X", "importtime", "-c", IMPORT_PROBE.format(module=module)]
        for i in range(runs + 1):  # the first run only warms caches
            r = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                out[module] = {"error": (r.stderr.strip().splitlines() or ["?"])[-1]}
                break
            after = r.stderr.split("-- mark --\n", 1)[1]
            rows = [ln.split("|") for ln in after.splitlines() if ln.startswith("import time:")]
            indents = [len(row[2]) - len(row[2].lstrip()) for row in rows]
            top = min(indents, default=0)
            us = sum(int(row[1]) for row, ind in zip(rows, indents, strict=True) if ind == top)
            if i > 0:
                ms.append(us / 1000)
                kb.append(int(r.stdout) * page_kb)
        else:
            out[module] = {
                "import_ms": round(statistics.median(ms), 2),
                "rss_kb": round(statistics.median(kb)),
                "runs": runs,
            }
    starts: dict[str, list[float]] = {"site": [], "-S": []}
    for i in range(runs + 1):
        for key, flags in (("site", []), ("-S", ["-S"])):
            t0 = time.perf_counter()
            subprocess.run([PYTHON, *flags, "-c", "pass"], env=env, cwd=REPO, check=True)
            if i > 0:
                starts[key].append((time.perf_counter() - t0) * 1000)
    out["site (python3 -c pass minus python3 -S -c pass)"] = {
        "import_ms": round(statistics.median(starts["site"]) - statistics.median(starts["-S"]), 2),
        "rss_kb": None,
        "runs": runs,
    }
    return out


# The accept loop's one use of private names (accepting.py): each client taken off the queue
# as socket.accept() does it, and as daytime-sd does, _accept() and the C type around the fd.
HOT_PATH_PROBE = """
import _socket, socket, sys, time
public, n = sys.argv[1] == "public", int(sys.argv[2])
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(4096)
clients = [socket.create_connection(srv.getsockname()) for _ in range(n)]
time.sleep(0.1)
t = time.perf_counter()
for _ in range(n):
    if public:
        conn, addr = srv.accept()
    else:
        fd, addr = srv._accept()
        conn = _socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, fd)
    conn.close()
print((time.perf_counter() - t) / n * 1e6)
"""


def hot_path_private_names(runs: int) -> Json:
    """µs per accepted connection (accept, the socket object, close), median of ``runs``
    runs of 2,000 each: what accepting.py's private names save, or cost, on this Python."""
    out: Json = {}
    for key in ("public", "private"):
        times = []
        for _ in range(runs):
            r = subprocess.run([PYTHON, "-S", "-c", HOT_PATH_PROBE, key, "2000"],
                               capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
            times.append(float(r.stdout))
        out[key] = round(statistics.median(times), 2)
    out["runs"] = runs
    return out


# What one fork costs the fork parent: fork, the child's _exit, waitpid.  The kernel copies
# the parent's page tables and write-protects its private pages at each fork, so the cost
# grows with the parent's memory: this is the figure behind keeping typing (and the re it
# imports) out of the long-running process (test_import_budget's LOOP_FORBIDDEN).
FORK_PARENTS = (
    ("python3 -S, nothing imported", ""),
    ("python3 -S, import typing", "import typing"),
    ("the daytime-sd fork parent's modules", "import daytime_sd.cli, daytime_sd.server"),
    (
        "the same, and typing as the long-running modules would import it",
        "import daytime_sd.cli, daytime_sd.server, typing",
    ),
)
FORK_PROBE = """
import gc, os, sys, time
exec(sys.argv[1])
gc.collect(); gc.freeze()  # as server.py does before forking
def batch(n):
    t = time.perf_counter()
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    return (time.perf_counter() - t) / n * 1e6
batch(50)
anon = next(int(ln.split()[1]) for ln in open("/proc/self/smaps_rollup")
            if ln.startswith("Anonymous:"))
print(min(batch(200) for _ in range(3)), anon)
"""


def fork_cost(runs: int) -> Json:
    """parent -> median over ``runs`` of the best of 3 batches of 200 forks (µs per fork,
    child _exit and waitpid included) and the parent's anonymous memory.  The parents take
    turns in every run, so a machine whose speed drifts moves them all alike."""
    env = server_environ(py_env())
    times: dict[str, list[float]] = {label: [] for label, _code in FORK_PARENTS}
    anon: dict[str, int] = {}
    for _ in range(runs):
        for label, code in FORK_PARENTS:
            r = subprocess.run([PYTHON, "-S", "-c", FORK_PROBE, code], env=env, cwd=REPO,
                               capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
            us, kb = r.stdout.split()
            times[label].append(float(us))
            anon[label] = int(kb)
    out: Json = {
        label: {"us_per_fork": round(statistics.median(times[label]), 1), "anon_kb": anon[label]}
        for label, _code in FORK_PARENTS
    }
    out["runs"] = runs
    return out


# Counts, not times: what a process does, the same however loaded or stolen-from the
# machine is (cells in seconds are not, and a VM's steal can make a run NOT QUIET).
FAULT_CONNECTIONS_S = 2.0


def _instructions(argv: list[str], env: dict[str, str]) -> float | str:
    """User-space instructions (millions) of one run of ``argv`` with a connected socket as
    its stdin and stdout (inetd's contract), counted by callgrind; or why not."""
    if not shutil.which("valgrind"):
        return "valgrind is not installed"
    ours, theirs = socket.socketpair()
    with ours, theirs:
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv]
        fd = theirs.fileno()
        r = subprocess.run(cmd, stdin=fd, stdout=fd, stderr=subprocess.PIPE, env=env, cwd=REPO,
                           text=True, timeout=120)  # fmt: skip
        theirs.close()
        ours.settimeout(5)
        line = ours.recv(600)
    found = re.search(r"Collected : (\d+)", r.stderr)
    if r.returncode != 0 or not found or not line.endswith(b"\r\n"):
        return f"exit {r.returncode}, line {line!r}"
    return int(found.group(1)) / 1e6


def _minor_faults(pid: int) -> int:
    """minflt of pid itself (its children's are cminflt, not counted)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def _parent_faults(srv: Server, logdir: Path) -> float | str:
    """Page faults of the fork server's own process per connection: after each fork every
    page it writes is copy-on-write again, so this counts the parent's working set."""
    port = free_port("tcp")
    with running(srv, port, logdir) as proc:
        before = _minor_faults(proc.pid)
        result = loadgen("tcp", port, 4, 1, FAULT_CONNECTIONS_S)
        after = _minor_faults(proc.pid)
    done = int(result["connections"])
    return (after - before) / done if done else "no connections"


def counts(servers: list[Server], logdir: Path) -> Json:
    """Instructions per Accept=yes connection (ours against the bare spawn's program and
    python3 -S importing os) and the fork parent's page faults per connection (ours against
    bench/pyfork.py)."""
    env = server_environ(py_env())
    launcher = str(REPO / "tools" / "daytime-sd")
    out: Json = {
        "instructions_m": {
            "daytime-sd Accept=yes (tools/daytime-sd, python3 -S)": _instructions(
                [PYTHON, "-S", launcher], env
            ),
            "bare python3 -c per connection": _instructions([PYTHON, "-c", BARE_PY], env),
            "python3 -S, importing os and writing a line (the floor)": _instructions(
                [PYTHON, "-S", "-c", "import os; os.write(1, b'\\r\\n')"], env
            ),
        },
        "fork_parent_faults": {},
    }
    by_key = {s.key: s for s in servers}
    for key in ("py-fork", "dsd-fork"):
        srv = by_key.get(key)
        if srv is not None and not srv.unavailable:
            out["fork_parent_faults"][srv.label] = _parent_faults(srv, logdir)
    return out


# --------------------------------------------------------------------------- reporting


def ratio(
    summary: dict[str, Json], a: str, b: str, cell: str, metric: str = "conn_per_s"
) -> float | None:
    try:
        num, den = summary[a][cell][metric], summary[b][cell][metric]
    except KeyError:
        return None
    return num / den if den else None


def paired_ratio(raw: dict[str, Json], a: str, b: str, cell: str) -> float | None:
    """The median over rounds of a's connections per second over b's in the same round:
    the two were measured seconds apart (MEASURE_ORDER), so a machine whose speed drifts
    between rounds moves both sides of each round's ratio alike."""

    def by_round(key: str) -> dict[int, float]:
        runs = raw.get(key, {}).get("runs", {}).get(cell, [])
        return {int(r.get("round", i)): float(r["conn_per_s"]) for i, r in enumerate(runs)}

    num, den = by_round(a), by_round(b)
    ratios = [num[r] / den[r] for r in num.keys() & den.keys() if den[r]]
    return statistics.median(ratios) if ratios else None


def targets(summary: dict[str, Json], ready: Json | None, raw: dict[str, Json]) -> list[Json]:
    """The issue's targets.  Ratios come twice: by connections per second (the target as
    written; the median of the rounds' ratios, paired_ratio) and by CPU per connection
    (server + load generator, whose ratio is what the throughput ratio tends to on a
    CPU-bound machine, and which other load on the machine disturbs much less)."""
    cell = cell_name(*TARGET_CELL)
    rows: list[Json] = []

    def add(
        name: str,
        value: float | None,
        want: float,
        unit: str,
        higher: bool,
        by_cpu: float | None = None,
    ) -> None:
        met = None if value is None else (value >= want if higher else value <= want)
        rows.append(
            {"target": name, "value": value, "by_cpu": by_cpu, "want": want, "unit": unit,
             "higher": higher, "met": met}
        )  # fmt: skip

    def cpu_ratio(a: str, b: str, c: str) -> float | None:
        x = ratio(summary, b, a, c, "total_us_per_conn")
        return x if x else None

    def best(keys: Sequence[str], metric: str, high: bool, c: str = cell) -> str | None:
        have = [k for k in keys if summary.get(k, {}).get(c, {}).get(metric)]
        if not have:
            return None
        pick = max if high else min
        return pick(have, key=lambda k: float(summary[k][c][metric]))

    # Issue 22's targets (a quiet machine, one run).  Accept=no against the best inetd
    # built-in, except at c=1, where the interpreter's cost per connection is the bound and
    # the bare CPython epoll loop the reference.
    inetds = ("openbsd-inetd", "xinetd")
    for c in (cell_name(*x) for x in CELLS):
        if c == cell_name(1, 1):
            add(f"Accept=no in-process vs the bare CPython epoll loop, {c}",
                paired_ratio(raw, "dsd-inproc", "py-epoll", c), 0.9, "x", True,
                cpu_ratio("dsd-inproc", "py-epoll", c))  # fmt: skip
            continue
        best_tp = best(inetds, "conn_per_s", True, c)
        best_cpu = best(inetds, "total_us_per_conn", False, c)
        add(
            f"Accept=no in-process vs best inetd built-in ({best_tp or 'n/a'}; by CPU: "
            f"{best_cpu or 'n/a'}), {c}",
            paired_ratio(raw, "dsd-inproc", best_tp, c) if best_tp else None,
            0.95,
            "x",
            True,
            cpu_ratio("dsd-inproc", best_cpu, c) if best_cpu else None,
        )
    for a, b, want, what in (
        ("dsd-fork", "py-fork", 0.75, "standalone fork vs the bare CPython fork loop"),
        ("dsd-accept", "py-spawn", 1.5, "Accept=yes vs bare python3 -c spawn"),
    ):
        for c in (cell_name(*x) for x in CELLS):
            add(f"{what}, {c}", paired_ratio(raw, a, b, c), want, "x", True, cpu_ratio(a, b, c))
    add("start to READY=1 (median)", ready.get("ready_ms_median") if ready else None,
        50.0, "ms", False)  # fmt: skip
    rss = ready.get("idle_rss_kb_median") if ready else None
    add("idle RSS, Accept=no", rss / 1024 if rss is not None else None, 16.0, "MB", False)
    return rows


ONE_THREAD_SERVERS = ("py-epoll", "openbsd-inetd", "xinetd", "dsd-inproc")


def one_thread_table(raw: dict[str, Json], summary: dict[str, Json]) -> list[str]:
    """The in-process servers at the cells with one load thread: what each connection cost
    the load generator and the server, and how often the server slept.  What the throughput
    ratios of those cells rest on."""
    cells = [cell_name(*c) for c in CELLS if c[0] > 1 and c[1] == 1]
    rows = [(k, c) for c in cells for k in ONE_THREAD_SERVERS if c in summary.get(k, {})]
    if not rows:
        return []
    out = [
        f"### One load thread ({', '.join(cells)})",
        "",
        "| server | cell | conn/s | load generator, % of a core | load generator µs/conn "
        "| server µs/conn | server sleeps/conn |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key, c in rows:
        x = summary[key][c]
        out.append(
            f"| {raw[key]['label']} | {c} | {fmt_num(x['conn_per_s'])} | "
            f"{x['loadgen_cpu_pct']:.0f} | {x['loadgen_us_per_conn']:.2f} | "
            f"{x['server_us_per_conn']:.2f} | {x['server_sleeps_per_conn']:.2f} |"
        )
    out += [
        "",
        "Where the load generator's one thread runs near 100% of a core, a cell's rate is one "
        "over its CPU time per connection, and that time depends on the server: on loopback "
        "the kernel delivers each segment on the sender's CPU time, and waking a server "
        "asleep in epoll_wait is paid by the client that wakes it. Server sleeps/conn: the "
        "server process's voluntary context switches per connection. Server µs/conn is what "
        "the server itself costs. These cells' ratios between servers move more from run to "
        "run than the others'.",
        "",
    ]
    return out


def fmt_num(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def markdown(
    servers: list[Server],
    raw: dict[str, Json],
    summary: dict[str, Json],
    ready: Json | None,
    trows: list[Json],
    meta: Json,
    imports: Json | None = None,
    counts_: Json | None = None,
    hot: Json | None = None,
    forks: Json | None = None,
) -> str:
    cells = [cell_name(*c) for c in CELLS]
    out: list[str] = []
    out.append(f"## daytime benchmark — {meta['date']}, {meta['host']}")
    out.append("")
    out.append(meta["machine"]["line"])
    out.append("")
    out.append(f"daytime-sd measured: {meta['tree']}")
    out.append("")
    out.append(
        f"{meta['cpus']} CPUs, kernel {meta['kernel']}, {meta['duration_s']} s per cell, "
        f"median of {meta['repeats']} run(s); load generator bench/loadgen.c on {HOST}."
    )
    out.append("")
    head = "| server | " + " | ".join(f"{c} conn/s | {c} p99 ms" for c in cells)
    tc = cell_name(*TARGET_CELL)
    head += f" | errors | server CPU µs/conn @{tc} | CPU% loadgen/rest/machine @{tc} |"
    out.append(head)
    out.append("|---|" + "---:|---:|" * len(cells) + "---:|---:|---|")
    for s in servers:
        sm = summary.get(s.key, {})
        if not sm:
            why = raw[s.key].get("skipped") or "; ".join(raw[s.key].get("failures", [])) or "?"
            dash = " | ".join(["—", "—"] * len(cells))
            out.append(f"| {s.label} | {dash} | — | — | {why} |")
            continue
        cols: list[str] = []
        for c in cells:
            x = sm.get(c)
            cols += [fmt_num(x["conn_per_s"]), f"{x['p99_ms']:.2f}"] if x else ["—", "—"]
        err: dict[str, int] = {}
        for c in cells:
            for k, v in sm.get(c, {}).get("errors", {}).items():
                err[k] = err.get(k, 0) + v
        errs = ", ".join(f"{k} {v}" for k, v in err.items() if v) or "0"
        t = sm.get(cell_name(*TARGET_CELL))
        us = f"{t['server_us_per_conn']:,.1f}" if t and t["server_us_per_conn"] else "—"
        cpu = (
            f"{t['loadgen_cpu_pct']:.0f}/{t['rest_cpu_pct']:.0f}/{t['machine_busy_pct']:.0f}"
            if t
            else "—"
        )
        out.append(f"| {s.label} | " + " | ".join(cols) + f" | {errs} | {us} | {cpu} |")
    out.append("")
    out.append(
        "conn/s: completed, verified connections (UDP rows: replies) per second; p99: 99th "
        "percentile of connect-to-EOF (UDP: send-to-reply). CPU% in the last column: the "
        "load generator's own (getrusage, % of one core) / everything else, i.e. the server "
        "with its children and the kernel's share (% of one core) / whole machine busy (% of "
        f"all {os.cpu_count()} cores). A load generator near 100% per thread was saturated; "
        "the machine near 100% means the cell was CPU-bound. Server CPU µs/conn: CPU time of "
        "the server process and its reaped children per answered connection, the figure "
        "least disturbed by other load on the machine. errors: summed over all cells and "
        "runs of the table (talkative cell excluded)."
    )
    out.append("")
    out.append(
        "machine: quiet or NOT QUIET. Quiet means a 1-minute load average of at most "
        f"{QUIET_LOAD} when the bench started, processes other than the bench's (and their "
        f"reaped children; kernel threads excluded) using at most {QUIET_OTHERS_PCT:g}% of "
        f"all CPUs' time in a {meta['machine']['before']['seconds']:g} s sample before the "
        "first cell, over the whole run and in every cell, and at most "
        f"{QUIET_STEAL_PCT:g}% of the CPU time stolen by the hypervisor (/proc/stat). "
        "Figures from a run that was not quiet are not to be published."
    )
    out.append("")
    if ready:
        rm = ready.get("ready_ms_median")
        rss = ready.get("idle_rss_kb_median")
        out.append(
            f"Accept=no start to READY=1: median {rm:.1f} ms of {ready['runs']} "
            f"(READY=1 datagram on NOTIFY_SOCKET, fork+exec with LISTEN_FDS=1); "
            f"idle RSS {rss / 1024:.1f} MB"
            if rm is not None and rss is not None
            else f"Accept=no start to READY=1: not measured ({'; '.join(ready['errors'])[:300]})"
        )
        out.append("")
    talk = [(s, summary[s.key][TALK_NAME]) for s in servers if TALK_NAME in summary.get(s.key, {})]
    if talk:
        out.append(
            f"### Talkative clients ({TALK_NAME}, loadgen -w: the client writes a request line "
            "before reading, one run)"
        )
        out.append("")
        out.append(
            "A server that closes with the client's input unread makes the kernel send RST; "
            "such clients then see ECONNRESET instead of (or after) their line."
        )
        out.append("")
        out.append("| server | conn/s | resets | other errors |")
        out.append("|---|---:|---:|---:|")
        for s, x in talk:
            reset = x["errors"]["reset"]
            other = sum(x["errors"].values()) - reset
            out.append(f"| {s.label} | {fmt_num(x['conn_per_s'])} | {reset:,} | {other:,} |")
        out.append("")
    acc, bare = summary.get("dsd-accept", {}), summary.get("py-spawn", {})
    if "c=1" in acc and "c=1" in bare:
        a, b = acc["c=1"], bare["c=1"]
        out.append(
            f"Accept=yes per-connection latency at c=1: p50 {a['p50_ms']:.1f} ms vs bare "
            f"`python3 -c` {b['p50_ms']:.1f} ms ({a['p50_ms'] / b['p50_ms']:.2f}x)."
        )
        out.append("")
    out.append(
        "### Targets (ratios in this run)"
        + (" — smoke run: 0.3 s cells, indicative only, not asserted" if meta["smoke"] else "")
    )
    out.append("")
    out.append("| target | value | wanted | met | by CPU/conn |")
    out.append("|---|---:|---:|---|---:|")
    for t in trows:
        v = t["value"]
        val = "n/a" if v is None else (f"{v:.2f}{t['unit']}" if t["unit"] == "x" else
                                       f"{v:.1f} {t['unit']}")  # fmt: skip
        want = ("≥ " if t["higher"] else "≤ ") + (
            f"{t['want']:g}{t['unit']}" if t["unit"] == "x" else f"{t['want']:g} {t['unit']}"
        )
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        bc = t.get("by_cpu")
        cpu = "" if bc is None else f"{bc:.2f}x ({'meets' if bc >= t['want'] else 'misses'})"
        out.append(f"| {t['target']} | {val} | {want} | {met} | {cpu} |")
    out.append("")
    out.append(
        "value/met: the ratio of connections per second, as the targets are written: the "
        "median of the rounds' ratios, the two sides of each measured seconds apart. "
        "by CPU/conn: the inverse ratio of (server + load generator) CPU time per connection "
        "at the same cell: what the throughput ratio tends to when the machine is the "
        "bottleneck, and far less disturbed by other load on a shared machine."
    )
    out.append("")
    floor = ratio(summary, "py-fork", "c-fork", cell_name(*TARGET_CELL))
    ours = ratio(summary, "dsd-fork", "py-fork", cell_name(*TARGET_CELL))
    if floor is not None and ours is not None:
        out.append(
            f"Fork per connection, {cell_name(*TARGET_CELL)}: the bare CPython loop "
            f"(bench/pyfork.py) reaches {floor:.2f}x the C fork server, and daytime-sd --fork "
            f"{ours:.2f}x that loop. What the fork target asks is bounded by the first figure: "
            "the cost of fork in CPython (its memory to copy, the pages a child writes), not "
            "what the server does around it."
        )
        out.append("")
    inproc = [
        (cell_name(*c), ratio(summary, "py-epoll", "c-epoll", cell_name(*c)),
         ratio(summary, "dsd-inproc", "py-epoll", cell_name(*c)))
        for c in CELLS
    ]  # fmt: skip
    if all(f is not None and o is not None for _c, f, o in inproc):
        out.append(
            "In-process, per cell: the bare CPython epoll loop (bench/pyepoll.py) reaches "
            + ", ".join(f"{f:.2f}x" for _c, f, _o in inproc)
            + " the C epoll server, and daytime-sd Accept=no "
            + ", ".join(f"{o:.2f}x" for _c, _f, o in inproc)
            + f" that loop ({', '.join(c for c, _f, _o in inproc)}). Where the first figure "
            "is below the target's 0.9x, the interpreter's cost per connection bounds it."
        )
        out.append("")
    out += one_thread_table(raw, summary)
    if hot:
        out.append(
            f"### Hot path: private names (Python {meta['python']}, median of {hot['runs']})"
        )
        out.append("")
        out.append(
            "Microseconds per accepted connection (accept, the socket object, close): "
            f"socket.accept() {hot['public']:.2f}, and as accepting.py does it, _accept() "
            f"with the C socket type, {hot['private']:.2f}."
        )
        out.append("")
    if forks:
        out.append(
            f"### Fork cost by the parent's memory (Python {meta['python']}, median of "
            f"{forks['runs']})"
        )
        out.append("")
        out.append(
            "Microseconds per fork, the child's _exit and waitpid included (best of 3 batches "
            "of 200), for a python3 -S parent that imported this much: the kernel copies the "
            "parent's page tables at every fork, so what the fork parent imports every "
            "connection pays."
        )
        out.append("")
        out.append("| parent | anon KB | µs per fork |")
        out.append("|---|---:|---:|")
        for label, _code in FORK_PARENTS:
            x = forks[label]
            out.append(f"| {label} | {x['anon_kb']:,} | {x['us_per_fork']:.1f} |")
        out.append("")
    if imports:
        out.append(
            f"### Import costs under Python {meta['python']} (python3 -S, median of "
            f"{next(iter(imports.values())).get('runs', 0)})"
        )
        out.append("")
        out.append(
            "What tests/integration/test_import_budget.py keeps off the per-connection path "
            "and out of the fork parent would cost each process (a module's dependencies "
            "included); daytime_sd.cli is the per-connection path's own import."
        )
        out.append("")
        out.append("| import | ms | RSS KB |")
        out.append("|---|---:|---:|")
        for module, x in imports.items():
            if "error" in x:
                out.append(f"| {module} | — | {x['error']} |")
                continue
            rss = "—" if x["rss_kb"] is None else f"{x['rss_kb']:,}"
            out.append(f"| {module} | {x['import_ms']:.2f} | {rss} |")
        out.append("")
    if counts_:
        out.append("### Counts (the same on a loaded machine)")
        out.append("")
        out.append(
            "User-space instructions of one process per connection (callgrind; its stdin and "
            "stdout a connected socket), and page faults of the fork server's own process per "
            f"connection ({FAULT_CONNECTIONS_S:g} s at c=4). Unlike the cells above, neither "
            "depends on what else the machine runs."
        )
        out.append("")
        out.append("| per connection | value |")
        out.append("|---|---:|")
        for label, v in counts_["instructions_m"].items():
            shown = v if isinstance(v, str) else f"{v:.2f}"
            out.append(f"| {label}: M instructions | {shown} |")
        for label, v in counts_["fork_parent_faults"].items():
            shown = v if isinstance(v, str) else f"{v:.1f}"
            out.append(f"| {label}: parent page faults | {shown} |")
        out.append("")
    out.append("Settings of the references:")
    out.append("")
    for s in servers:
        if s.note:
            out.append(f"- {s.label}: {s.note}")
    out.append("")
    return "\n".join(out)


def chart(servers: list[Server], summary: dict[str, Json], path: Path) -> str:
    try:
        mpl = importlib.import_module("matplotlib")
        mpl.use("Agg")
        plt = importlib.import_module("matplotlib.pyplot")
    except ImportError as e:
        return f"no chart: {e} (Debian package python3-matplotlib)"
    shown = [s for s in servers if summary.get(s.key)]
    if not shown:
        return "no chart: nothing measured"
    cells = [cell_name(*c) for c in CELLS]
    fig, axes = plt.subplots(2, 1, figsize=(12, 9), constrained_layout=True)
    width = 0.8 / len(cells)
    for ax, metric, title in (
        (axes[0], "conn_per_s", "connections (UDP: replies) per second, median"),
        (axes[1], "p99_ms", "p99 latency, ms, median"),
    ):
        for j, c in enumerate(cells):
            xs = [i + (j - (len(cells) - 1) / 2) * width for i in range(len(shown))]
            ys = [summary[s.key].get(c, {}).get(metric, 0.0) for s in shown]
            ax.bar(xs, ys, width, label=c)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xticks(range(len(shown)))
        ax.set_xticklabels([s.label for s in shown], rotation=20, ha="right", fontsize=8)
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return ""


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per cell (default 5)")
    p.add_argument("--repeats", type=int, default=3, help="runs per cell, median (default 3)")
    p.add_argument("--ready-runs", type=int, default=20, help="start-to-READY runs (default 20)")
    p.add_argument(
        "--servers",
        default="",
        help="comma-separated server keys (see --list; default: all but c-epoll-udp, "
        "which --udp-ref or --smoke add)",
    )
    p.add_argument(
        "--udp-ref", action="store_true", help="also the C UDP reference (adds ~1 minute)"
    )
    p.add_argument(
        "--talk-seconds",
        type=float,
        default=2.0,
        help=f"seconds of the talkative-client cell ({TALK_NAME}, first round; 0 = none)",
    )
    p.add_argument("--smoke", action="store_true", help="0.3 s per cell, one repeat, no targets")
    p.add_argument("--out", type=Path, default=RESULTS, help="output directory")
    p.add_argument("--name", default="", help="output base name (default latest / smoke)")
    p.add_argument("--no-fetch", action="store_true", help="skip apt-get download of inetds")
    p.add_argument("--list", action="store_true", help="list server keys and exit")
    a = p.parse_args(argv)
    if a.smoke:
        a.duration, a.repeats, a.ready_runs = SMOKE_SECONDS, 1, 3
        a.talk_seconds = min(a.talk_seconds, SMOKE_SECONDS)
    a.quiet_sample = 0.5 if a.smoke else QUIET_SAMPLE_S
    a.name = a.name or ("smoke" if a.smoke else "latest")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    started = time.monotonic()
    load_start = load_average()  # before building or starting anything
    build_c()
    if a.no_fetch:
        inetds: dict[str, Path] = {}
        missing = {"openbsd-inetd": "--no-fetch", "xinetd": "--no-fetch"}
        ldpath = ""
    else:
        inetds, missing, ldpath = fetch_inetds(update=not a.smoke)
    dsd_missing = daytime_sd_available()
    if not dsd_missing:
        precompile()
    servers = make_servers(inetds, missing, ldpath, dsd_missing, run_scratch())
    if a.list:
        for s in servers:
            print(f"{s.key:14} {s.label}{'  [' + s.unavailable + ']' if s.unavailable else ''}")
        return 0
    if a.servers or not (a.udp_ref or a.smoke):
        keep = set(a.servers.split(",")) if a.servers else {s.key for s in servers}
        if not a.servers:
            keep.discard("c-epoll-udp")
        unknown = keep - {s.key for s in servers}
        if unknown:
            print(f"run.py: unknown server(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        servers = [s for s in servers if s.key in keep]
    for s in servers:
        if s.unavailable:
            log(f"skip {s.key}: {s.unavailable}")

    log(f"quiet check: {a.quiet_sample:g} s sample before the first cell")
    snap = CpuSnapshot()
    time.sleep(a.quiet_sample)
    run_start = CpuSnapshot()
    before = usage(snap, run_start)
    logdir = BUILD / "logs"
    raw = bench_servers(servers, a.duration, a.repeats, logdir, a.talk_seconds)
    summary = summarize(raw)
    ready: Json | None = None
    if not dsd_missing and shutil.which(SSA) and (not a.servers or "dsd-inproc" in a.servers):
        log(f"start to READY=1: {a.ready_runs} runs")
        ready = time_to_ready(a.ready_runs, 0.3 if a.smoke else 1.0)
    imports: Json | None = None
    if not dsd_missing:
        log("import costs")
        imports = import_costs(1 if a.smoke else 5)
    log("hot path: private names")
    hot = hot_path_private_names(1 if a.smoke else 7)
    forks: Json | None = None
    if not dsd_missing:
        log("fork cost by the parent's memory")
        forks = fork_cost(1 if a.smoke else 7)
    counted: Json | None = None
    if not dsd_missing and not a.smoke:
        log("counts: instructions per Accept=yes process, fork parent's page faults")
        counted = counts(servers, logdir)
    machine = quietness(load_start, before, usage(run_start, CpuSnapshot()), raw)
    trows = targets(summary, ready, raw)
    uname = os.uname()
    meta: Json = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "tree": tree_measured(),
        "host": uname.nodename,
        "kernel": uname.release,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "duration_s": a.duration,
        "repeats": a.repeats,
        "smoke": a.smoke,
        "cells": [cell_name(*c) for c in CELLS],
        "udp_rate": UDP_RATE,
        "machine": machine,
    }
    md = markdown(servers, raw, summary, ready, trows, meta, imports, counted, hot, forks)
    a.out.mkdir(parents=True, exist_ok=True)
    png = a.out / f"{a.name}.png"
    chart_err = chart(servers, summary, png)
    meta["elapsed_s"] = round(time.monotonic() - started, 1)
    doc = {
        "meta": meta,
        "summary": summary,
        "raw": raw,
        "ready": ready,
        "imports": imports,
        "counts": counted,
        "hot_path": hot,
        "fork_cost": forks,
        "targets": [] if a.smoke else trows,
    }
    (a.out / f"{a.name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    (a.out / f"{a.name}.md").write_text(md + "\n")
    print(md)
    print(f"Wrote {a.out / (a.name + '.md')}, {a.out / (a.name + '.json')}", end="")
    print(f", {png}" if not chart_err else f"; {chart_err}")
    print(f"Elapsed {meta['elapsed_s']} s.")
    print(machine["line"])  # last, where it is seen
    return 0


if __name__ == "__main__":
    sys.exit(main())
