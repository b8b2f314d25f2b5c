# SPDX-License-Identifier: MIT
"""sd_notify(3) through sdnotify: READY, STATUS, WATCHDOG and STOPPING, one mechanism.

Nothing is imported or sent unless systemd gave us ``NOTIFY_SOCKET``.  STATUS is kept to
at most one update a second: the service manager parses every datagram.

sdnotify swallows every error unless built with ``debug=True``; we build it so, catch the
errors here and log the first one: a Type=notify start that times out for want of READY=1
must leave a trace that says why.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Mapping

from daytime_sd import log
from daytime_sd.accepting import RESOURCE  # the errnos of a shortage: try again later

# The fork parent: every fork copies typing's memory (bench/ output, "Fork cost").
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class _Sender(Protocol):
        """What we use of sdnotify.SystemdNotifier (it ships no type hints)."""

        socket: socket.socket

        def notify(self, state: str) -> None: ...


# The manager ignores a whole datagram of PIPE_BUF (4096) bytes or more, READY=1 with it:
# STATUS= is cut well below that.
STATUS_MAX = 2048


def safe_status(text: str) -> str:
    """``text`` as printable ASCII: escapes for the rest, cut to ``STATUS_MAX`` characters.

    sd_notify(3) takes STATUS= as UTF-8 text; we deviate and send ASCII only.  sdnotify
    encodes Latin-1 and fails on anything beyond it (``/run/время.sock``), and the manager
    drops a STATUS= that is not valid UTF-8, which Latin-1 above 0x7f is not: ASCII is what
    both take unchanged.  The rest becomes a Python escape (``\\u0432``), not ``?``, so two
    paths that differ stay apart.  Control characters are escaped too: the manager splits a
    datagram at ``\\n`` and ``\\r``, so a path holding one could add a field of its own.
    """
    if not (text.isascii() and text.isprintable()):
        text = "".join(
            c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in text
        )
    if len(text) > STATUS_MAX:
        text = text[: STATUS_MAX - 3] + "..."
    return text


def _require(name: str) -> None:
    """Raise ImportError now, as ``import name`` would, without running the module.

    A missing python3-sdnotify is reported at start (cli.missing), not at the first STATUS=;
    importlib.util would cost more to import than the check, so ask the finders directly.
    """
    if not any(f.find_spec(name, None) for f in sys.meta_path if hasattr(f, "find_spec")):
        raise ImportError(f"No module named {name!r}", name=name)


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._sender: _Sender | None = None  # sdnotify's, made at the first message
        self._ready = ""  # READY=1 not yet delivered (no descriptor to connect with)
        self._socket: socket.socket | None = None
        self._address = env.get("NOTIFY_SOCKET", "")
        self._failed = False  # a failure was logged
        self._closed = not self._address  # nothing (more) to send to
        if self._address:  # outside any try: a missing package is cli's to report
            _require("sdnotify")
        self.watchdog_interval = self._watchdog_interval(env)
        self._last_status = ""
        self._status_at = 0.0

    @staticmethod
    def _watchdog_interval(env: Mapping[str, str]) -> float | None:
        """Half of WATCHDOG_USEC, as sd_watchdog_enabled(3) recommends; None if not asked."""
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
            return None
        return int(usec) / 2e6

    def _failure(self, kind: str, err: BaseException) -> None:
        """Log the first failed notification only: a manager that does not read would
        otherwise add a line for every WATCHDOG=1."""
        if not self._failed:
            self._failed = True
            log.warning(
                f"sd_notify {kind} to {self._address} failed: {err};"
                " serving on (further failures are not logged)"
            )

    def _connect(self, kind: str) -> _Sender | None:
        """sdnotify's sender, connected at the first message and held from then on, so that
        STATUS and WATCHDOG still go out while accept(2) finds no descriptor left.

        A failure is logged once; after a shortage (no descriptor to connect with) the next
        message tries again, after any other (no such socket, no permission) nothing more
        is sent, as sdnotify itself would do.
        """
        if self._sender is None and not self._closed:
            try:
                import sdnotify

                sender = sdnotify.SystemdNotifier(debug=True)  # raise, do not swallow
            except Exception as err:  # connect(): no such socket, no permission; EMFILE
                self._failure(kind, err)
                self._closed = getattr(err, "errno", None) not in RESOURCE
            else:
                self._socket = sender.socket
                self._sender = sender
        return self._sender

    def _send(self, state: str, wait: float | None = 0.0) -> None:
        """Send without blocking the loop on a manager that does not read (queue full).

        READY waits (``wait=None``) and STOPPING a little; a STATUS or WATCHDOG that finds
        the queue full is dropped: the next one follows within a second.
        """
        kind = state.partition("=")[0]
        sender = self._connect(kind)
        if sender is None:
            return
        if self._ready and not state.startswith("READY=1"):
            self._send(self._ready, wait=None)  # READY=1 before anything that follows it
        if self._socket is not None:
            self._socket.settimeout(wait)
        try:
            sender.notify(state)
            if state.startswith("READY=1"):
                self._ready = ""
        except Exception as err:  # OSError from sendall(); the text itself is safe
            self._failure(kind, err)

    def ready(self, status: str) -> None:
        """READY=1 and STATUS= in one datagram, and WATCHDOG=1 if the watchdog is on.

        One datagram, READY=1 first: the manager takes the state and its text together, and
        the text can no longer make the datagram fail (see safe_status).  The watchdog's
        first ping rides along, so the next is due a whole interval later.  It blocks while
        the manager's queue is full, as libsystemd's sd_notify() does: dropped, READY=1
        would leave the start to time out all the same.  Short of a descriptor to connect
        with, it goes out ahead of the next message instead.
        """
        self._last_status = status
        self._status_at = time.monotonic()
        ping = "WATCHDOG=1\n" if self.watchdog_interval else ""
        self._ready = f"READY=1\n{ping}STATUS={safe_status(status)}"
        self._send(self._ready, wait=None)

    def status(self, status: str, force: bool = False) -> None:
        now = time.monotonic()
        if status != self._last_status and (force or now - self._status_at >= 1.0):
            self._last_status = status
            self._status_at = now
            self._send(f"STATUS={safe_status(status)}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def stopping(self, status: str) -> None:
        self._send(f"STOPPING=1\nSTATUS={safe_status(status)}", wait=1.0)

    def close(self) -> None:
        """After STOPPING=1: nothing more to say."""
        if self._socket is not None:
            self._socket.close()
        self._socket = None
        self._sender = None
        self._closed = True
