#!/usr/bin/python3
"""Daytime test client for the e2e rig: single queries and paced connection load.

Self-contained (stdlib only) so that it can run as a plain script in the container's network
namespace (``nsenter --net=... python3 loadclient.py ...``).  Prints one JSON object.

    loadclient.py tcp HOST PORT            -> {"ok": bool, "data": "...", "error": "..."}
    loadclient.py udp HOST PORT            -> same, one datagram
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

    def add(self, outcome: str, detail: str = "") -> None:
        self.counts[outcome] += 1
        if outcome != "ok" and len(self.samples) < 10:
            self.samples.append(f"{outcome}: {detail}")


def run_load(
    host: str, port: int, rate: float, duration: float, timeout: float, pattern: str
) -> dict[str, object]:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    line_re = re.compile(pattern.encode())
    family = _family(host)
    sel = selectors.DefaultSelector()
    res = LoadResult()
    total = int(rate * duration)
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

    while res.started < total or sel.get_map():
        now = time.monotonic()
        # Start every connection that is due (catching up if we fell behind).
        while res.started < total and t0 + res.started / rate <= now:
            res.started += 1
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex((host, port))
            if err not in (0, errno.EINPROGRESS):
                s.close()
                res.add(
                    "refused" if err == errno.ECONNREFUSED else "client_error", os.strerror(err)
                )
                continue
            c = _Conn(s, now + timeout)
            sel.register(s, selectors.EVENT_WRITE, c)
            last_start = now
        next_start = t0 + res.started / rate if res.started < total else now + 0.05
        wait = max(0.0, min(next_start - time.monotonic(), 0.05))
        for key, _ev in sel.select(wait):
            c = key.data
            assert isinstance(c, _Conn)
            if not c.connected:
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    outcome = {errno.ECONNREFUSED: "refused", errno.ECONNRESET: "reset"}
                    finish(c, outcome.get(err, "client_error"), os.strerror(err))
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
    out: dict[str, object] = {"started": res.started, **res.counts}
    out["elapsed"] = round(time.monotonic() - t0, 3)
    # Connections per second actually offered (== rate when the client kept its schedule).
    out["offered_rate"] = round(res.started / (last_start - t0 + 1 / rate), 1)
    out["samples"] = res.samples
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("mode", choices=("tcp", "udp", "load"))
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=1000.0, help="connections per second")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds")
    ap.add_argument("--pattern", default=CTIME_LINE, help="regex one answer must fully match")
    args = ap.parse_args(argv)
    if args.mode == "tcp":
        out = query_tcp(args.host, args.port, args.timeout)
    elif args.mode == "udp":
        out = query_udp(args.host, args.port, args.timeout)
    else:
        out = run_load(args.host, args.port, args.rate, args.duration, args.timeout, args.pattern)
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
