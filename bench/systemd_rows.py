#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""`make bench-systemd`: Accept=no and Accept=yes as each release's own PID 1 runs them.

`make bench` measures daytime-sd under systemd-socket-activate on the host.  This companion
boots each release's cached rootfs with systemd as PID 1 (tests/e2e/rig.py), installs the
project as the .deb does, and runs the same loads (tests/e2e/loadclient.py in the container's
network namespace: 20/s for 10 s, 100/s for 5 s, and a 2,000-connection burst of 1,000/s for
2 s) at daytime.socket in each configuration:

- ``accept-no``: the socket as shipped (one daytime.service serves everything);
- ``accept-yes``: the documented ``Accept=yes`` drop-in (one daytime@.service per
  connection), with the release's default poll limit (systemd >= 255: 150 polls per 2 s);
- ``accept-yes, poll limit off`` (systemd >= 255 only): the same with
  ``PollLimitIntervalSec=0``, to show what the default costs and buys.

For each: connections answered, closed without a line (PID 1 past MaxConnections=),
refused, reset or timed out, the time until the last answer, and answered / that time.
Writes bench/results/systemd.md and systemd.json.

Needs root (systemd-nspawn).  ``--releases bookworm,trixie`` (default), any of the rig's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
sys.path.insert(0, str(REPO / "tests"))

from e2e.rig import (  # noqa: E402
    DEFAULT_RELEASES,
    REPO_ROOT,
    Container,
    ensure_rootfses,
)

ACCEPT_YES = "/etc/systemd/system/daytime.socket.d/50-accept.conf"
POLL_OFF = "/etc/systemd/system/daytime.socket.d/60-poll-limit-off.conf"
POLL_LIMIT_FROM = 255  # the first systemd with PollLimitIntervalSec=/PollLimitBurst=
# (name, loadclient arguments): a steady rate Accept=yes keeps up with, one it does not, and
# the 2,000-connection burst; each client waits up to --timeout s for its line.
LOADS = (
    ("20/s for 10 s", ("--rate", "20", "--duration", "10", "--timeout", "60")),
    ("100/s for 5 s", ("--rate", "100", "--duration", "5", "--timeout", "60")),
    ("burst: 1,000/s for 2 s", ("--rate", "1000", "--duration", "2", "--timeout", "120")),
)

Json = dict[str, Any]


def log(msg: str) -> None:
    print(f"[bench-systemd] {msg}", file=sys.stderr, flush=True)


def configurations(systemd: int) -> list[tuple[str, dict[str, str]]]:
    configs: list[tuple[str, dict[str, str]]] = [
        ("accept-no", {}),
        ("accept-yes", {ACCEPT_YES: "[Socket]\nAccept=yes\n"}),
    ]
    if systemd >= POLL_LIMIT_FROM:
        configs.append(
            (
                "accept-yes, poll limit off",
                {
                    ACCEPT_YES: "[Socket]\nAccept=yes\n",
                    POLL_OFF: "[Socket]\nPollLimitIntervalSec=0\n",
                },
            )
        )
    return configs


def run_load(ct: Container, dropins: dict[str, str], load: Sequence[str]) -> Json:
    ct.reset_daytime()
    for path, text in dropins.items():
        ct.write_file(path, text)
    ct.systemctl("daemon-reload")
    ct.systemctl("enable", "--now", "daytime.socket")
    ct.query("tcp", "127.0.0.1")  # Accept=no: the service is up before the load
    time.sleep(2.5)  # a fresh poll-limit window
    result: Json = ct.client("load", "127.0.0.1", "13", *load, timeout=300)
    socket_state = ct.unit_show("daytime.socket", "ActiveState", "Result")
    elapsed = float(result["elapsed"])
    ok = int(result["ok"])
    return {
        "started": result["started"],
        "ok": ok,
        "empty": result["empty"],
        "refused": result["refused"],
        "reset": result["reset"],
        "timeout": result["timeout"],
        "bad": int(result["bad"]) + int(result["short"]) + int(result["client_error"]),
        "elapsed_s": elapsed,
        "answered_per_s": round(ok / elapsed, 1) if elapsed else 0.0,
        "socket": f"{socket_state['ActiveState']}/{socket_state['Result']}",
    }


def bench_release(rootfs: Path, release: str) -> Json:
    with Container(rootfs) as ct:
        ct.install_from_tree(REPO_ROOT)
        systemd = ct.systemd_version
        log(f"{release}: systemd {systemd}")
        rows: list[Json] = []
        for name, dropins in configurations(systemd):
            for load_name, load in LOADS:
                row = {"configuration": name, "load": load_name, **run_load(ct, dropins, load)}
                log(f"{release}: {row}")
                rows.append(row)
        ct.reset_daytime()
        return {"systemd": systemd, "rows": rows}


def markdown(results: dict[str, Json], when: str, load: tuple[float, float]) -> str:
    out = [
        f"# daytime-sd under each release's systemd ({when}, {platform.node()})",
        "",
        f"Load average (1 min) at the start {load[0]:.2f}, at the end {load[1]:.2f}, on"
        f" {os.cpu_count()} CPUs: other load slows Accept=yes most.",
        "",
        "Paced loads and a 2,000-connection burst at daytime.socket in a booted container",
        "(`make bench-systemd`, bench/systemd_rows.py; each client waits up to 60 s, in the",
        "burst 120 s, for its line).  *answered/s*: answered connections / time to the last",
        "answer.  *no line*: closed by PID 1 without a line (Accept=yes past",
        "MaxConnections=64).",
        "",
        "| release | systemd | configuration | load | answered | no line | refused | reset |"
        " timed out | last answer after | answered/s | socket after |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for release, res in results.items():
        for r in res["rows"]:
            out.append(
                f"| {release} | {res['systemd']} | {r['configuration']} | {r['load']} |"
                f" {r['ok']:,} | {r['empty']:,} |"
                f" {r['refused']:,} | {r['reset']:,} | {r['timeout']:,} |"
                f" {r['elapsed_s']:.1f} s | {r['answered_per_s']:,.1f} | {r['socket']} |"
            )
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--releases", default=",".join(DEFAULT_RELEASES))
    p.add_argument("--name", default="systemd", help="results file name (default systemd)")
    args = p.parse_args(argv)
    releases = [r for r in args.releases.split(",") if r]
    rootfses = ensure_rootfses(releases)
    when = time.strftime("%Y-%m-%d")
    load_before = os.getloadavg()[0]
    results = {r: bench_release(rootfses[r], r) for r in releases}
    load = (load_before, os.getloadavg()[0])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results, when, load)
    (RESULTS / f"{args.name}.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
