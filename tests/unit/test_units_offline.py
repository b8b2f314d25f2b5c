# SPDX-License-Identifier: MIT
"""Fast, offline checks of the unit files in systemd/ with the host's systemd-analyze.

No booted systemd needed: ``systemd-analyze verify --root`` and ``systemd-analyze security
--offline=true --root`` on a scratch root holding the host's stock units (so that
``sockets.target`` etc. resolve), our units, a stub ``/usr/sbin/daytime-sd`` and the man page.
The booted-system versions of these checks are in tests/e2e/test_units.py (check 7).
"""

from __future__ import annotations

import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daytime_sd import server

REPO = Path(__file__).resolve().parents[2]
UNIT_DIR = REPO / "systemd"
SOCKETS = ("daytime.socket", "daytime-udp.socket")
SERVICES = ("daytime.service", "daytime@.service", "daytime-udp.service")
MAX_EXPOSURE = 1.0
UNIT_PATH = "usr/lib/systemd/system"

# Settings every service unit must carry (issue 3), with the value systemd must end up with.
HARDENING = {
    "DynamicUser": "yes",
    "PrivateNetwork": "yes",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_UNIX",
    "SystemCallArchitectures": "native",
    "MemoryDenyWriteExecute": "yes",
    "IPAddressDeny": "any",
    "UMask": "0077",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "PrivateUsers": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "no",  # with only the read allowed: test_the_clock_state_is_readable
    "ProtectHostname": "yes",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
}


def parse_unit(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` -> every value assigned, in order (units allow repeated keys)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a key=value line: {raw!r}"
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def last(unit: dict[str, list[str]], key: str) -> str:
    values = unit.get(key)
    assert values, f"{key} not set"
    return values[-1]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Scratch root: stock units, ours, stub executables, the man page."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing: install the systemd package (make deps)"
    root = tmp_path_factory.mktemp("root")
    # /usr/lib/systemd/system: the one system unit directory of every systemd we support
    # (systemd >= 255 no longer looks in /lib/systemd/system).  The stock units are taken from
    # both places, for a build chroot without merged /usr (bookworm allows one).
    seen: set[tuple[int, int]] = set()
    for stock in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        st = stock.stat() if stock.is_dir() else None
        if st and (st.st_dev, st.st_ino) not in seen:  # /lib is /usr/lib on merged /usr
            seen.add((st.st_dev, st.st_ino))
            shutil.copytree(stock, root / UNIT_PATH, symlinks=True, dirs_exist_ok=True)
    for unit in UNIT_DIR.iterdir():
        shutil.copy(unit, root / UNIT_PATH / unit.name)
    for stub in ("usr/sbin/daytime-sd", "bin/sh"):  # ExecStart='s and ExecReload='s programs
        path = root / stub
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    man8 = root / "man/man8"
    man8.mkdir(parents=True)
    shutil.copy(REPO / "man/daytime-sd.8", man8 / "daytime-sd.8")
    return root


def analyze(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # MANPATH: the Documentation=man:daytime-sd(8) check must find our page, not the host's.
    # MAN_DISABLE_SECCOMP: verify runs man(1), and man-db's seccomp sandbox cannot start under
    # an LD_PRELOAD such as libfaketime's (reprotest's time variation, tools/qa): man exits 3
    # and verify reports the page missing.  The sandbox guards man against hostile pages; this
    # one is ours.
    env = {
        **os.environ,
        "MANPATH": str(root / "man"),
        "MAN_DISABLE_SECCOMP": "1",
        "SYSTEMD_PAGER": "",
        "SYSTEMD_COLORS": "0",
    }
    return subprocess.run(
        ["systemd-analyze", *args, f"--root={root}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_every_unit_is_shipped() -> None:
    assert sorted(p.name for p in UNIT_DIR.iterdir()) == sorted([*SOCKETS, *SERVICES])


def test_verify_is_clean(root: Path) -> None:
    proc = analyze(root, "verify", *SOCKETS, *SERVICES)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_verify_is_clean_in_accept_yes_mode(root: Path) -> None:
    dropin = root / "etc/systemd/system/daytime.socket.d/accept.conf"
    dropin.parent.mkdir(parents=True)
    dropin.write_text("[Socket]\nAccept=yes\n")
    try:
        proc = analyze(root, "verify", "daytime.socket", "daytime@.service")
    finally:
        shutil.rmtree(dropin.parent)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_verify_catches_a_broken_unit(root: Path) -> None:
    """The check above can fail: a unit pointing at a missing binary is reported."""
    bad = root / UNIT_PATH / "daytime-broken.service"
    bad.write_text("[Service]\nExecStart=/usr/sbin/daytime-sd-missing\n")
    try:
        proc = analyze(root, "verify", "daytime-broken.service")
    finally:
        bad.unlink()
    assert proc.returncode != 0 and "daytime-sd-missing" in proc.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_security_exposure_offline(root: Path, service: str) -> None:
    # --threshold is on the 0-100 scale: 10 is an exposure of 1.0.
    proc = analyze(root, "security", "--offline=true", "--threshold=10", "--no-pager", service)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE, proc.stdout
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("service", SERVICES)
def test_the_clock_state_is_readable_and_nothing_else_of_the_clock(service: str) -> None:
    """ProtectClock=yes refuses the read-only clock_adjtime too (systemd #26413): it is off,
    and exactly the read-only call is allowed back after the deny lists, with no capability
    that would let it write (issue 12)."""
    unit = parse_unit(UNIT_DIR / service)
    filters = unit["Service.SystemCallFilter"]
    deny = next(i for i, f in enumerate(filters) if f.startswith("~"))
    allowed = [f for f in filters[deny + 1 :] if not f.startswith("~")]
    assert allowed == ["clock_adjtime clock_adjtime64"], filters
    assert last(unit, "Service.CapabilityBoundingSet") == ""
    assert "@privileged" in filters[deny]  # @clock's settimeofday, adjtimex stay denied


@pytest.mark.parametrize("service", SERVICES)
def test_hardening_settings(service: str) -> None:
    unit = parse_unit(UNIT_DIR / service)
    for key, want in HARDENING.items():
        assert last(unit, f"Service.{key}") == want, f"{service}: {key}"
    filters = unit["Service.SystemCallFilter"]
    assert "@system-service" in filters, filters
    assert any(
        f.startswith("~") and {"@privileged", "@resources"} <= set(f[1:].split()) for f in filters
    )
    # Never a PATH lookup: the installed script, absolute.
    exec_start = [v for v in unit["Service.ExecStart"] if v]
    assert len(exec_start) == 1
    assert re.match(r"-?/usr/sbin/daytime-sd(\s|$)", exec_start[0]), exec_start
    assert last(unit, "Unit.Documentation") == "man:daytime-sd(8)"


@pytest.mark.parametrize("service", ["daytime.service", "daytime-udp.service"])
def test_accept_no_services(service: str) -> None:
    unit = parse_unit(UNIT_DIR / service)
    assert last(unit, "Service.Type") == "notify"
    assert last(unit, "Service.Restart") == "on-failure"
    assert last(unit, "Service.WatchdogSec")
    assert "--idle-timeout" in last(unit, "Service.ExecStart")
    socket = service.replace(".service", ".socket")
    assert last(unit, "Install.Also") == socket


@pytest.mark.parametrize("service", ["daytime.service", "daytime-udp.service"])
def test_reload_sends_sighup_to_the_main_process(service: str) -> None:
    """`systemctl reload` re-reads the time zone (issue 11 defect 7): the ExecReload= line
    run as systemd runs it ($$ is a literal $; MAINPID in the environment) signals a real
    process.  test_units' test_11 does it under PID 1 and the units' sandbox."""
    line = last(parse_unit(UNIT_DIR / service), "Service.ExecReload").replace("$$", "$")
    # The target says when its handler is in place and when the signal came, and waits for it
    # in pause(): no deadline of its own that a busy host could beat.  The generous timeouts
    # below only keep a broken reload from hanging the run (a fixed 10 s did time out on a
    # loaded host under Python 3.14).  alarm() ends a target nobody signals.
    # os.write, not print: the signal can arrive while print('ready') is still inside stdout's
    # buffered writer, and a print in the handler then fails as a reentrant call.
    code = (
        "import os, signal\n"
        "def hup(*_):\n    os.write(1, b'HUP\\n'); os._exit(7)\n"
        "signal.signal(signal.SIGHUP, hup)\n"
        "signal.alarm(600)\n"
        "os.write(1, b'ready\\n')\n"
        "while True:\n    signal.pause()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
    ) as target:
        assert target.stdout is not None
        assert target.stdout.readline() == "ready\n"  # the handler is in place
        env = {"MAINPID": str(target.pid), "PATH": "/usr/bin:/bin"}
        subprocess.run(shlex.split(line), env=env, check=True, timeout=300)
        assert target.stdout.readline() == "HUP\n"  # blocks until the signal arrived
        assert target.wait(timeout=300) == 7


def test_the_accept_no_service_sets_its_descriptor_limit() -> None:
    """Issue 11 defect 10: ~@resources forbids setrlimit, so the unit must set the limit
    the lingering clients need; the soft default of 1024 gave room for 752."""
    unit = parse_unit(UNIT_DIR / "daytime.service")
    assert "@resources" in " ".join(unit["Service.SystemCallFilter"])
    limit = int(last(unit, "Service.LimitNOFILE"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, max(hard, limit)))
        assert server.max_lingering() >= 8192
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_per_connection_service() -> None:
    unit = parse_unit(UNIT_DIR / "daytime@.service")
    assert last(unit, "Service.StandardInput") == "socket"
    # Otherwise stderr, tracebacks included, goes to the TCP client.
    assert last(unit, "Service.StandardError") == "journal"
    assert last(unit, "Service.ExecStart").startswith("-/")
    assert last(unit, "Unit.CollectMode") == "inactive-or-failed"
    assert "Install.WantedBy" not in unit


def test_sockets() -> None:
    tcp = parse_unit(UNIT_DIR / "daytime.socket")
    assert last(tcp, "Socket.ListenStream") == "13"
    assert last(tcp, "Socket.BindIPv6Only") == "both"
    assert last(tcp, "Socket.Accept") == "no"
    assert last(tcp, "Install.WantedBy") == "sockets.target"
    # A burst must never take the socket down: trigger limit off, connections bounded.
    assert last(tcp, "Socket.TriggerLimitIntervalSec") == "0"
    assert (
        0
        < int(last(tcp, "Socket.MaxConnectionsPerSource"))
        < int(last(tcp, "Socket.MaxConnections"))
    )
    udp = parse_unit(UNIT_DIR / "daytime-udp.socket")
    # Poll limits stay systemd's defaults (systemd >= 255), so that no unit names a key
    # bookworm's systemd 252 would warn about (daytime.socket says why).
    for unit in (tcp, udp):
        assert not [k for k in unit if k.startswith("Socket.PollLimit")], unit
    assert last(udp, "Socket.ListenDatagram") == "13"
    assert last(udp, "Socket.BindIPv6Only") == "both"
    assert last(udp, "Socket.TriggerLimitIntervalSec") == "0"
