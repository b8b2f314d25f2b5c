# SPDX-License-Identifier: MIT
"""The seven checks of issue 3 against a real systemd (PID 1 in a booted container).

One container per module (booted in well under a second from the cached rootfs), the
project installed from the source tree as the .deb would; every test starts from stopped,
disabled daytime units without drop-ins (``ct`` fixture).  The container has a private
network namespace: 127.0.0.1:13 and [::1]:13 below are the container's, not the host's.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

from daytime_sd import clock, nist

from .rig import CTIME_LINE, REPO_ROOT, Container, listening

README = REPO_ROOT / "README.md"

ACCEPT_YES = "/etc/systemd/system/daytime.socket.d/50-accept.conf"
POLL_LIMIT_FROM = 255  # the first systemd with PollLimitIntervalSec=/PollLimitBurst=
SERVICE_UNITS = ("daytime.service", "daytime@.service", "daytime-udp.service")
ALL_UNITS = ("daytime.socket", "daytime-udp.socket", *SERVICE_UNITS)


def assert_line(data: str) -> None:
    assert CTIME_LINE.fullmatch(data), f"not one valid Daytime line: {data!r}"


def socket_listening(ct: Container, unit: str = "daytime.socket") -> bool:
    st = ct.unit_show(unit, "ActiveState", "SubState")
    return st == {"ActiveState": "active", "SubState": "listening"}


def assert_socket_healthy(ct: Container, unit: str = "daytime.socket") -> None:
    st = ct.unit_show(unit, "ActiveState", "SubState", "Result")
    assert st["ActiveState"] == "active", f"{unit} is down: {st}"
    assert st["SubState"] in ("listening", "running"), st
    assert st["Result"] == "success", st
    assert listening(ct, 13), "nothing listens on port 13 any more"


def accept_queue(ct: Container, port: int) -> int:
    """Connections waiting in the accept queue of the TCP listener on `port` (for a listening
    socket /proc/net/tcp* reports the queue length as rx_queue)."""
    queued = 0
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{ct.leader}/net/{table}") as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[1].endswith(f":{port:04X}") and cols[3] == "0A":
                    queued += int(cols[4].split(":")[1], 16)
    return queued


def enable_accept_yes(ct: Container) -> None:
    ct.write_file(ACCEPT_YES, "[Socket]\nAccept=yes\n")
    ct.systemctl("daemon-reload")
    ct.systemctl("enable", "--now", "daytime.socket")
    assert ct.unit_show("daytime.socket", "Accept")["Accept"] == "yes"


# Issue 3 asks for >= 1,000 connections/s; ask the client for a little more as a margin.
LOAD_RATE_MIN = 1000
LOAD_RATE = 1100
FAILURES = ("refused", "reset", "empty", "short", "bad", "timeout", "client_error")


def assert_clean_load(result: dict[str, object], minimum: int, empty_allowed: int = 0) -> None:
    """Every connection got one full line (`empty_allowed`: see test_4b)."""
    failed = {k: result[k] for k in FAILURES if result[k] != 0}
    empty = failed.pop("empty", 0)
    assert isinstance(empty, int)
    assert not failed and empty <= empty_allowed, f"failed connections: {result}"
    started = result["started"]
    assert isinstance(started, int) and started >= minimum, result
    assert result["ok"] == started - empty, result


def run_load_while(
    ct: Container, action: Callable[[], None], rate: int, seconds: float
) -> dict[str, object]:
    """Run a paced TCP load against 127.0.0.1:13 and call ``action()`` until it finishes."""
    proc = ct.client_popen(
        "load", "127.0.0.1", "13", "--rate", str(rate), "--duration", str(seconds)
    )
    try:
        while proc.poll() is None:
            action()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert isinstance(result, dict)
    print(f"load result: {result}")
    offered = result["offered_rate"]
    assert isinstance(offered, float), result
    assert offered >= LOAD_RATE_MIN, f"client fell behind: {result}"
    return result


# 1 -------------------------------------------------------------------------------------


def test_1_socket_activation_answers_ipv4_and_ipv6(ct: Container) -> None:
    ct.systemctl("enable", "--now", "daytime.socket")
    assert ct.systemctl("is-enabled", "daytime.socket") == "enabled"
    assert socket_listening(ct), "daytime.socket not listening after enable --now"
    assert ct.systemctl("is-active", "daytime.service", check=False) == "inactive"

    assert_line(ct.query("tcp", "127.0.0.1"))
    assert_line(ct.query("tcp", "::1"))

    st = ct.unit_show(
        "daytime.service", "ActiveState", "StatusText", "MainPID", "Type", "WatchdogTimestamp"
    )
    assert st["ActiveState"] == "active", st
    assert st["Type"] == "notify"
    # WatchdogSec=: the service pings (the timestamp is set by WATCHDOG=1 messages).
    assert st["WatchdogTimestamp"], st
    # The READY=1 STATUS= line, updated as connections are answered.
    assert re.search(r"connections", st["StatusText"]), st
    # DynamicUser=yes: the service does not run as root.
    uid = ct.run(["stat", "-c", "%u", f"/proc/{st['MainPID']}"]).stdout.strip()
    assert uid != "0", "daytime.service runs as root"
    log = ct.journal("-u", "daytime.service")
    assert re.search(r"^serving .*tcp", log, re.M), f"no start-up line in the journal:\n{log}"


# 2 -------------------------------------------------------------------------------------


def test_2_accept_yes_instances_answer_and_stderr_stays_in_journal(ct: Container) -> None:
    enable_accept_yes(ct)
    # Anything the instances write to stderr must end up in the journal, never on the wire:
    # a marker written to stderr before the real program runs ...
    ct.write_file(
        "/etc/systemd/system/daytime@.service.d/50-stderr.conf",
        "[Service]\nExecStart=\n"
        "ExecStart=-/bin/sh -c 'echo E2E-STDERR-MARKER >&2; exec /usr/sbin/daytime-sd'\n",
    )
    ct.systemctl("daemon-reload")
    accepted = int(ct.unit_show("daytime.socket", "NAccepted")["NAccepted"])
    for host in ("127.0.0.1", "::1", "127.0.0.1"):
        assert_line(ct.query("tcp", host))
    assert int(ct.unit_show("daytime.socket", "NAccepted")["NAccepted"]) == accepted + 3
    ct.wait_for("the marker in the journal", lambda: "E2E-STDERR-MARKER" in ct.journal())
    # The single-process service must not have been involved.
    assert ct.systemctl("is-active", "daytime.service", check=False) == "inactive"

    # ... and the real program's own error output (a usage error here): the client gets
    # nothing, the error goes to the journal, and no failed instance is left behind.
    ct.write_file(
        "/etc/systemd/system/daytime@.service.d/50-stderr.conf",
        "[Service]\nExecStart=\nExecStart=-/usr/sbin/daytime-sd --no-such-option\n",
    )
    ct.systemctl("daemon-reload")
    result = ct.client("tcp", "127.0.0.1", "13")
    assert result["data"] == "", f"stderr reached the client: {result}"
    ct.wait_for(
        "the usage error in the journal",
        lambda: "daytime-sd: error:" in ct.journal(),  # the README contract
    )
    ct.wait_for(
        "instances to be collected",
        lambda: ct.systemctl("list-units", "--all", "--no-legend", "daytime@*") == "",
    )
    assert ct.systemctl("list-units", "--failed", "--no-legend") == ""
    assert_socket_healthy(ct)


# 3 -------------------------------------------------------------------------------------


def test_3_udp_socket_answers_datagrams(ct: Container) -> None:
    assert ct.systemctl("is-enabled", "daytime-udp.socket", check=False) == "disabled"
    assert not listening(ct, 13, "udp"), "UDP port 13 open before daytime-udp.socket started"
    ct.systemctl("enable", "--now", "daytime-udp.socket")
    assert_line(ct.query("udp", "127.0.0.1"))
    assert_line(ct.query("udp", "::1"))
    assert ct.systemctl("is-active", "daytime-udp.service") == "active"
    # The TCP socket is a separate unit and stays off.
    assert ct.systemctl("is-active", "daytime.socket", check=False) == "inactive"


# 4 -------------------------------------------------------------------------------------


def test_4a_restart_under_load_loses_nothing(ct: Container) -> None:
    ct.systemctl("enable", "--now", "daytime.socket")
    assert_line(ct.query("tcp", "127.0.0.1"))
    pids: set[str] = set()

    def restart() -> None:
        time.sleep(0.5)
        ct.systemctl("restart", "daytime.service")
        pids.add(ct.unit_show("daytime.service", "MainPID")["MainPID"])

    result = run_load_while(ct, restart, rate=LOAD_RATE, seconds=5)
    assert_clean_load(result, minimum=5 * LOAD_RATE)
    assert len(pids) >= 5, f"too few restarts happened during the load: {pids}"
    assert_socket_healthy(ct)


def test_4b_kill_9_under_load_loses_nothing(ct: Container) -> None:
    ct.systemctl("enable", "--now", "daytime.socket")
    assert_line(ct.query("tcp", "127.0.0.1"))
    killed: list[str] = []

    def kill() -> None:
        time.sleep(0.5)
        pid = ct.unit_show("daytime.service", "MainPID")["MainPID"]
        if pid != "0":
            ct.run(["sh", "-c", f"kill -9 {pid}"])  # the shell builtin: no procps here
            killed.append(pid)

    result = run_load_while(ct, kill, rate=LOAD_RATE, seconds=5)
    # A SIGKILL that lands between the service's accept() and send() of one connection
    # loses that one connection (the client sees EOF without data; the kernel cannot hand
    # an accepted connection back).  Nothing in user space can close that window of a few
    # microseconds, so allow at most one empty answer per kill; never a refusal, a reset,
    # a partial line or a timeout, and everything queued in the backlog must be answered.
    assert_clean_load(result, minimum=5 * LOAD_RATE, empty_allowed=len(killed))
    assert len(set(killed)) >= 5, f"too few kills happened during the load: {killed}"
    assert int(ct.unit_show("daytime.service", "NRestarts")["NRestarts"]) >= 1
    assert_socket_healthy(ct)


# 5 -------------------------------------------------------------------------------------


def test_5_idle_exit_and_reactivation(ct: Container) -> None:
    idle = 1.0
    ct.write_file(
        "/etc/systemd/system/daytime.service.d/50-idle.conf",
        f"[Service]\nEnvironment=DAYTIME_IDLE_TIMEOUT={idle:g}\n",
    )
    ct.systemctl("daemon-reload")
    ct.systemctl("enable", "--now", "daytime.socket")
    assert_line(ct.query("tcp", "127.0.0.1"))
    assert ct.systemctl("is-active", "daytime.service") == "active"

    ct.wait_for(
        "daytime.service to exit when idle",
        lambda: ct.systemctl("is-active", "daytime.service", check=False) == "inactive",
        timeout=idle + 5,
    )
    st = ct.unit_show("daytime.service", "Result", "ExecMainStatus")
    assert st == {"Result": "success", "ExecMainStatus": "0"}, st
    assert socket_listening(ct), "socket not listening after the idle exit"
    assert listening(ct, 13)
    assert_line(ct.query("tcp", "::1"))  # re-activates

    # Connections arriving around the moment of the idle exit: after one connection, wait
    # about the idle timeout (a little less to a little more), then fire a short burst.
    starts_before = ct.journal("-u", "daytime.service").count("serving ")
    offsets = (-0.1, -0.05, -0.02, -0.01, 0.0, 0.005, 0.01, 0.02, 0.05, 0.1)
    result = ct.client(
        "idle-race",
        "127.0.0.1",
        "13",
        "--idle",
        f"{idle:g}",
        f"--offsets={','.join(map(str, offsets))}",
        "--rate",
        "500",
        "--duration",
        "0.1",
    )
    print(f"idle race: {result}")
    assert_clean_load(result, minimum=len(offsets) * 51)
    starts = ct.journal("-u", "daytime.service").count("serving ") - starts_before
    print(f"service starts during the idle race: {starts}")
    # The race was really exercised: the service exited and restarted during the loop.
    assert starts >= 2, f"service started only {starts} times; the idle exit was not hit"
    assert ct.systemctl("list-units", "--failed", "--no-legend") == ""


# 6 -------------------------------------------------------------------------------------


def burst(ct: Container) -> dict[str, object]:
    # 2,000 connections in 2 s at least (10 % margin for the client's own jitter).
    return ct.client("load", "127.0.0.1", "13", "--rate", "1100", "--duration", "2")


def test_6_burst_in_accept_yes_mode_keeps_socket_up(ct: Container) -> None:
    enable_accept_yes(ct)
    # Control: systemd's default trigger limit (200 per 2 s) would take the socket down
    # under this very burst; the test below could not pass by accident.  From systemd 255 the
    # default poll limit (150 per 2 s) keeps the trigger limit from being reached, so the
    # control turns it off to reach the same failure.
    poll_off = "PollLimitIntervalSec=0\n" if ct.systemd_version >= POLL_LIMIT_FROM else ""
    ct.write_file(
        "/etc/systemd/system/daytime.socket.d/60-default-limit.conf",
        f"[Socket]\nTriggerLimitIntervalSec=2s\nTriggerLimitBurst=200\n{poll_off}",
    )
    ct.systemctl("daemon-reload")
    ct.systemctl("restart", "daytime.socket")
    burst(ct)
    st = ct.unit_show("daytime.socket", "ActiveState", "Result")
    assert st == {"ActiveState": "failed", "Result": "trigger-limit-hit"}, st

    ct.run(["rm", "/etc/systemd/system/daytime.socket.d/60-default-limit.conf"])
    ct.systemctl("daemon-reload")
    ct.systemctl("reset-failed", "daytime.socket")
    ct.systemctl("restart", "daytime.socket")
    result = burst(ct)
    print(f"burst result: {result}")
    started = result["started"]
    assert isinstance(started, int) and started >= 2000, result
    offered = result["offered_rate"]
    assert isinstance(offered, float) and offered >= 1000, f"not a 2 s burst: {result}"
    ok = result["ok"]
    assert isinstance(ok, int) and ok > 0, f"no connection answered during the burst: {result}"
    # Beyond MaxConnections*= PID 1 accepts and closes at once: "empty", never garbage.
    assert result["bad"] == result["short"] == 0, result
    assert_socket_healthy(ct)
    # Still serving afterwards, once the burst is worked off.  From systemd 255 the poll limit
    # takes the rest of it off the backlog at 75 connections a second (those of clients that
    # gave up included, each past MaxConnections*= closed at once), so wait for the accept
    # queue to empty and the instances to finish.
    ct.wait_for(
        "the backlog to drain and the instances to finish",
        lambda: (
            accept_queue(ct, 13) == 0
            and ct.unit_show("daytime.socket", "NConnections")["NConnections"] == "0"
        ),
        timeout=90,
    )
    assert_line(ct.query("tcp", "127.0.0.1"))
    assert_socket_healthy(ct)


# 7 -------------------------------------------------------------------------------------


def test_7_verify_and_security_inside(ct: Container) -> None:
    # No man-db in the minimal container: the man page is checked by the offline unit test.
    proc = ct.run(["systemd-analyze", "verify", "--man=no", *ALL_UNITS], check=False)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    enable_accept_yes(ct)
    proc = ct.run(["systemd-analyze", "verify", "--man=no", "daytime.socket"], check=False)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr

    scores: dict[str, float] = {}
    for unit in ("daytime.service", "daytime@e2e.service", "daytime-udp.service"):
        proc = ct.run(["systemd-analyze", "security", "--no-pager", unit], check=False)
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
        assert m, f"no score for {unit}: {proc.stdout[-500:]} {proc.stderr}"
        scores[unit] = float(m.group(1))
        # --threshold is on the 0-100 scale: 10 == exposure 1.0.
        thr = ct.run(["systemd-analyze", "security", "--threshold=10", unit], check=False)
        assert thr.returncode == 0, f"{unit} above threshold: {thr.stdout[-300:]}"
    print(f"systemd-analyze security inside the container: {scores}")
    assert all(score <= 1.0 for score in scores.values()), scores
    # The figure the docs quote is the one systemd reports (issue 21.11: they said 0.2 and 0.5).
    quoted = re.findall(r"`systemd-analyze security` exposure (\d+\.\d+)", README.read_text())
    assert quoted and {float(q) for q in quoted} == set(scores.values()), (quoted, scores)


# 8 -------------------------------------------------------------------------------------


def test_8_poll_limits_are_systemds_defaults_and_no_unit_warns(ct: Container) -> None:
    """Issue 10: the units leave the poll limits (systemd >= 255) at systemd's defaults on
    purpose (daytime.socket says why), so they name no key bookworm's 252 does not know: no
    unit of ours makes PID 1 log a warning on any release."""
    ct.mark_journal()
    ct.systemctl("daemon-reload")
    ct.systemctl("enable", "--now", "daytime.socket", "daytime-udp.socket")
    props = ("PollLimitIntervalUSec", "PollLimitBurst")
    if ct.systemd_version >= POLL_LIMIT_FROM:
        for unit in ("daytime.socket", "daytime-udp.socket"):
            assert ct.unit_show(unit, *props) == {props[0]: "2s", props[1]: "15"}, unit
        enable_accept_yes(ct)
        assert ct.unit_show("daytime.socket", *props) == {props[0]: "2s", props[1]: "150"}
    else:
        assert ct.unit_show("daytime.socket", *props) == {}, "systemd < 255 has no poll limit"
    # What PID 1 said while loading the units (daemon-reload) and starting the sockets.
    warnings = ct.journal("_PID=1", "-p", "warning")
    ours = [line for line in warnings.splitlines() if "daytime" in line]
    assert ours == [], "\n".join(ours)


# 9 -------------------------------------------------------------------------------------


def test_9_log_connections_reach_the_journal_with_remote_fields(ct: Container) -> None:
    """Issue 13: with --log-connections under the shipped unit, each connection is one journal
    entry with REMOTE_ADDR (an IPv4 client as IPv4, not v4-mapped) and REMOTE_PORT."""
    ct.write_file(
        "/etc/systemd/system/daytime.service.d/50-log.conf",
        "[Service]\nExecStart=\n"
        "ExecStart=/usr/sbin/daytime-sd --idle-timeout 0 --log-connections\n",
    )
    ct.systemctl("daemon-reload")
    ct.systemctl("enable", "--now", "daytime.socket")
    for host in ("127.0.0.1", "::1"):
        assert_line(ct.query("tcp", host))

    def entries() -> list[dict[str, object]]:
        out = ct.journal(
            "-u", "daytime.service", "-o", "json", "--output-fields=REMOTE_ADDR,REMOTE_PORT,MESSAGE"
        )
        found = [json.loads(line) for line in out.splitlines() if line.strip()]
        return [e for e in found if "REMOTE_ADDR" in e]

    ct.wait_for("two connection entries in the journal", lambda: len(entries()) >= 2)
    got = entries()
    assert sorted(str(e["REMOTE_ADDR"]) for e in got) == ["127.0.0.1", "::1"], got
    for e in got:
        port = str(e["REMOTE_PORT"])
        assert port.isdigit() and 0 < int(port) < 65536, e
        assert str(e["REMOTE_ADDR"]) in str(e["MESSAGE"]), e


NIST_LINE = re.compile(
    r"^(\d{5}) (\d\d)-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d) (\d\d) ([012]) ([0-4]) +0\.0 "
    r"UTC\(HOST\) \*\r\n$"
)


def test_10_nist_format_reads_the_kernel_clock_under_the_shipped_units(ct: Container) -> None:
    """Issue 12: --format nist set with a drop-in answers in NIST's layout, and H is what
    the kernel's state says: the hardened unit can read it (STATUS= names the state,
    not "unknown").  The kernel's NTP state is the host's, read here directly."""
    expected = clock.read()
    ct.write_file(
        "/etc/systemd/system/daytime.service.d/50-nist.conf",
        "[Service]\nExecStart=\nExecStart=/usr/sbin/daytime-sd --idle-timeout 0 --format nist\n",
    )
    ct.systemctl("daemon-reload")
    ct.systemctl("enable", "--now", "daytime.socket")
    line = ct.query("tcp", "127.0.0.1")
    m = NIST_LINE.match(line)
    assert m, repr(line)
    assert int(m.group(10)) == nist.health(expected), (line, expected)
    want = "clock synchronized" if expected.synchronized else "clock NOT synchronized"
    ct.wait_for(
        "STATUS= with the clock state",
        lambda: want in ct.systemctl("show", "-p", "StatusText", "daytime.service"),
    )
    journal = ct.journal("-u", "daytime.service")
    assert "adjtimex failed" not in journal, journal


# 11 ------------------------------------------------------------------------------------


def test_11_reload_reads_a_changed_time_zone_without_a_restart(ct: Container) -> None:
    """Issue 11 defect 7 under PID 1: the C library reads /etc/localtime once per process,
    so after a zone change the running service answers in the old zone until `systemctl
    reload` (ExecReload= sends SIGHUP through the sandbox) makes it read the zone again;
    the same process goes on serving."""
    ct.write_file(
        "/etc/systemd/system/daytime.service.d/50-iso.conf",
        "[Service]\nExecStart=\nExecStart=/usr/sbin/daytime-sd --idle-timeout 0 --format iso8601\n",
    )
    ct.systemctl("daemon-reload")
    ct.systemctl("enable", "--now", "daytime.socket")
    zone = ct.run(["readlink", "/etc/localtime"]).stdout.strip()
    assert zone.endswith("/UTC"), zone  # the rootfs's own, put back below
    try:
        assert ct.query("tcp", "127.0.0.1").endswith("+00:00\r\n")
        pid = ct.unit_show("daytime.service", "MainPID")["MainPID"]
        ct.run(["ln", "-sfn", "/usr/share/zoneinfo/Asia/Tokyo", "/etc/localtime"])
        time.sleep(1.1)  # a second on: the line cache is not what keeps the old zone
        assert ct.query("tcp", "127.0.0.1").endswith("+00:00\r\n"), "read without a reload?"
        ct.systemctl("reload", "daytime.service")
        ct.wait_for(
            "an answer in the new zone",
            lambda: ct.query("tcp", "127.0.0.1").endswith("+09:00\r\n"),
            timeout=10,
        )
        assert ct.unit_show("daytime.service", "MainPID")["MainPID"] == pid
        journal = ct.journal("-u", "daytime.service")
        assert "SIGHUP: time zone read again (JST)" in journal, journal
    finally:
        ct.run(["ln", "-sfn", zone, "/etc/localtime"])
