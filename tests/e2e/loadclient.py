#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Daytime test client for the e2e rig: single queries and paced connection load.

Self-contained (stdlib only) so that it can run as a plain script in the container's network
namespace (``nsenter --net=... python3 loadclient.py ...``).  Prints one JSON object.

    loadclient.py tcp HOST PORT            -> {"ok": bool, "data": "...", "error": "..."}
    loadclient.py udp HOST PORT            -> same, one datagram
    loadclient.py idle-race HOST PORT --idle 1 --offsets=-0.1,0,0.1 --rate 500 --duration 0.1
        -> the load counts over: per offset, one connection, a sleep of idle+offset, a burst
    loadclient.py load HOST PORT --rate 1000 --duration 5
        -> {"started": N, "ok": N, "refused": 0, "reset": 0, "empty": 0, "short": 0,
            "bad": 0, "timeout": 0, "client_error": 0, "elapsed": s, "offered_rate": r,
            "samples": [...]}

A load connection is "ok" only if it got exactly one line matching --pattern (default: the
service's ctime preset, CRLF-terminated) followed by a clean EOF.  Loopback only.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import os
import re
import resource
import selectors
import socket
import sys
import time
from dataclasses import dataclass, field

CTIME_LINE = r"[A-Z][a-z]{2} [A-Z][a-z]{2} \d{2} \d{2}:\d{2}:\d{2} \d{4}\r\n"
# ok: one valid line, clean EOF; empty: EOF before any byte; short: EOF inside the line.
OUTCOMES = ("ok", "refused", "reset", "empty", "short", "bad", "timeout", "client_error")


def _family(host: str) -> socket.AddressFamily:
    addr = ipaddress.ip_address(host)
    if not addr.is_loopback:
        raise SystemExit(f"loadclient: refusing non-loopback address {host}")
    return socket.AF_INET6 if addr.version == 6 else socket.AF_INET


def query_tcp(host: str, port: int, timeout: float) -> dict[str, object]:
    data = b""
    try:
        with socket.socket(_family(host), socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect((host, port))
            while chunk := s.recv(4096):
                data += chunk
        return {"ok": True, "data": data.decode("latin-1"), "error": None}
    except OSError as e:
        return {"ok": False, "data": data.decode("latin-1"), "error": repr(e)}


def query_udp(host: str, port: int, timeout: float) -> dict[str, object]:
    try:
        with socket.socket(_family(host), socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(b"\n", (host, port))
            data, _ = s.recvfrom(4096)
        return {"ok": True, "data": data.decode("latin-1"), "error": None}
    except OSError as e:
        return {"ok": False, "data": "", "error": repr(e)}


@dataclass
class _Conn:
    sock: socket.socket
    deadline: float
    connected: bool = False
    data: bytearray = field(default_factory=bytearray)


@dataclass
class LoadResult:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    samples: list[str] = field(default_factory=list)
    started: int = 0
    label: str = ""  # prefixed to samples

    def add(self, outcome: str, detail: str = "") -> None:
        self.counts[outcome] += 1
        if outcome != "ok" and len(self.samples) < 10:
            self.samples.append(f"{self.label}{outcome}: {detail}")

    def as_json(self, elapsed: float, offered_rate: float) -> dict[str, object]:
        return {
            "started": self.started,
            **self.counts,
            "elapsed": round(elapsed, 3),
            "offered_rate": round(offered_rate, 1),
            "samples": self.samples,
        }


def run_load(
    res: LoadResult,
    host: str,
    port: int,
    rate: float,
    duration: float,
    timeout: float,
    line_re: re.Pattern[bytes],
) -> float:
    """Open ``rate * duration`` connections on schedule; add their outcomes to ``res``.

    Returns the rate actually offered (== ``rate`` when the client kept its schedule).
    """
    family = _family(host)
    sel = selectors.DefaultSelector()
    total = int(rate * duration)
    started = 0
    t0 = last_start = time.monotonic()

    def finish(c: _Conn, outcome: str, detail: str = "") -> None:
        sel.unregister(c.sock)
        c.sock.close()
        res.add(outcome, detail)

    def judge(c: _Conn) -> tuple[str, str]:
        if not c.data:
            return "empty", "EOF without data"
        if not c.data.endswith(b"\n"):
            return "short", repr(bytes(c.data))
        if not line_re.fullmatch(bytes(c.data)):
            return "bad", repr(bytes(c.data))
        return "ok", ""

    while started < total or sel.get_map():
        now = time.monotonic()
        # Start every connection that is due (catching up if we fell behind).
        while started < total and t0 + started / rate <= now:
            started += 1
            res.started += 1
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex((host, port))
            if err not in (0, errno.EINPROGRESS):
                s.close()
                outcome = "refused" if err == errno.ECONNREFUSED else "client_error"
                res.add(outcome, os.strerror(err))
                continue
            sel.register(s, selectors.EVENT_WRITE, _Conn(s, now + timeout))
            last_start = now
        next_start = t0 + started / rate if started < total else now + 0.05
        wait = max(0.0, min(next_start - time.monotonic(), 0.05))
        for key, _ev in sel.select(wait):
            c = key.data
            assert isinstance(c, _Conn)
            if not c.connected:
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    by_errno = {errno.ECONNREFUSED: "refused", errno.ECONNRESET: "reset"}
                    finish(c, by_errno.get(err, "client_error"), os.strerror(err))
                    continue
                c.connected = True
                sel.modify(c.sock, selectors.EVENT_READ, c)
                continue
            try:
                chunk = c.sock.recv(4096)
            except ConnectionResetError:
                finish(c, "reset", repr(bytes(c.data)))
                continue
            except OSError as e:
                finish(c, "client_error", repr(e))
                continue
            if chunk:
                c.data += chunk
                if len(c.data) > 1024:
                    finish(c, "bad", "over 1 KiB")
            else:
                finish(c, *judge(c))
        now = time.monotonic()
        for key in list(sel.get_map().values()):
            c = key.data
            assert isinstance(c, _Conn)
            if now > c.deadline:
                finish(c, "timeout", repr(bytes(c.data)))
    sel.close()
    return started / (last_start - t0 + 1 / rate) if started else 0.0


def run_idle_race(
    res: LoadResult,
    host: str,
    port: int,
    idle: float,
    offsets: list[float],
    rate: float,
    duration: float,
    timeout: float,
    line_re: re.Pattern[bytes],
) -> None:
    """Per offset: one connection (it resets the service's idle timer), sleep idle+offset,
    then a short burst: bursts land just before, at and just after the service's idle exit.
    Timed in one process, so no process start-up blurs the offsets."""
    for offset in offsets:
        res.label = f"offset {offset:+.3f}: "
        run_load(res, host, port, 1000.0, 0.001, timeout, line_re)  # exactly one connection
        time.sleep(max(0.0, idle + offset))
        run_load(res, host, port, rate, duration, timeout, line_re)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("mode", choices=("tcp", "udp", "load", "idle-race"))
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=1000.0, help="connections per second")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds")
    ap.add_argument("--pattern", default=CTIME_LINE, help="regex one answer must fully match")
    ap.add_argument("--idle", type=float, default=1.0, help="idle-race: the idle timeout")
    ap.add_argument("--offsets", default="0", help="idle-race: comma-separated seconds")
    args = ap.parse_args(argv)
    if args.mode == "tcp":
        out = query_tcp(args.host, args.port, args.timeout)
    elif args.mode == "udp":
        out = query_udp(args.host, args.port, args.timeout)
    else:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        line_re = re.compile(args.pattern.encode())
        res = LoadResult()
        t0 = time.monotonic()
        if args.mode == "load":
            offered = run_load(
                res, args.host, args.port, args.rate, args.duration, args.timeout, line_re
            )
        else:
            offsets = [float(x) for x in args.offsets.split(",")]
            run_idle_race(
                res,
                args.host,
                args.port,
                args.idle,
                offsets,
                args.rate,
                args.duration,
                args.timeout,
                line_re,
            )
            offered = args.rate
        out = res.as_json(time.monotonic() - t0, offered)
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
