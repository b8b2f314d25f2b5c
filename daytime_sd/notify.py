"""sd_notify(3) through sdnotify: READY, STATUS, WATCHDOG and STOPPING.

Nothing is imported or sent unless systemd gave us ``NOTIFY_SOCKET``.  STATUS is kept to
at most one update a second: the service manager parses every datagram.

sdnotify swallows every error unless built with ``debug=True``; we build it so, catch the
errors here and log the first one: a Type=notify start that times out for want of READY=1
must leave a trace that says why.
"""

from __future__ import annotations

import os
import time

from daytime_sd import log

TYPE_CHECKING = False  # typing and socket cost memory that every forked child copies
if TYPE_CHECKING:
    import socket
    from collections.abc import Mapping
    from typing import Protocol

    class _Sender(Protocol):
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


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._sender: _Sender | None = None
        self._socket: socket.socket | None = None
        self._address = env.get("NOTIFY_SOCKET", "")
        self._failed = False
        if self._address:
            import sdnotify  # outside the try: a missing python3-sdnotify is cli's to report

            try:
                sender = sdnotify.SystemdNotifier(debug=True)  # raise, do not swallow
            except Exception as err:  # connect(): no such socket, no permission, a bad name
                self._failure("READY", err)
            else:
                self._socket = sender.socket
                self._sender = sender
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

    @property
    def active(self) -> bool:
        """True while there is a notification socket to send to."""
        return self._sender is not None

    def _failure(self, kind: str, err: BaseException) -> None:
        """Log the first failed notification only: a manager that does not read would
        otherwise add a line for every WATCHDOG=1."""
        if not self._failed:
            self._failed = True
            log.warning(
                f"sd_notify {kind} to {self._address} failed: {err};"
                " serving on (further failures are not logged)"
            )

    def _send(self, state: str, wait: float = 0.0) -> None:
        """Send without blocking the loop on a manager that does not read (queue full).

        READY and STOPPING may wait a little; a STATUS or WATCHDOG that finds the queue full
        is dropped: the next one follows within a second.
        """
        if self._sender is not None:
            if self._socket is not None:
                self._socket.settimeout(wait)
            try:
                self._sender.notify(state)
            except Exception as err:  # OSError from sendall(); the text itself is safe
                self._failure(state.partition("=")[0], err)

    def ready(self, status: str) -> None:
        self._last_status = status
        self._status_at = time.monotonic()
        # One datagram, READY=1 first: the manager takes the state and its text together,
        # and the text can no longer make the datagram fail (see safe_status).
        self._send(f"READY=1\nSTATUS={safe_status(status)}", wait=1.0)

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
