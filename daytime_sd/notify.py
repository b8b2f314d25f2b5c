"""sd_notify(3) through sdnotify: READY, STATUS, WATCHDOG and STOPPING.

Nothing is imported or sent unless systemd gave us ``NOTIFY_SOCKET``.  STATUS is kept to
at most one update a second: the service manager parses every datagram.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # typing and socket cost memory that every forked child copies
if TYPE_CHECKING:
    import socket
    from collections.abc import Mapping
    from typing import Protocol

    class _Sender(Protocol):
        def notify(self, state: str) -> None: ...


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._sender: _Sender | None = None
        self._socket: socket.socket | None = None
        if env.get("NOTIFY_SOCKET"):
            import sdnotify

            sender = sdnotify.SystemdNotifier()
            self._socket = sender.socket  # None when NOTIFY_SOCKET is unreachable
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
        return self._sender is not None

    def _send(self, state: str, wait: float = 0.0) -> None:
        """Send without blocking the loop on a manager that does not read (queue full).

        READY and STOPPING may wait a little; a STATUS or WATCHDOG that finds the queue full
        is dropped (sdnotify swallows the error): the next one follows within a second.
        """
        if self._sender is not None:
            if self._socket is not None:
                self._socket.settimeout(wait)
            self._sender.notify(state)

    def ready(self, status: str) -> None:
        self._last_status = status
        self._status_at = time.monotonic()
        self._send(f"READY=1\nSTATUS={status}", wait=1.0)

    def status(self, status: str, force: bool = False) -> None:
        now = time.monotonic()
        if status != self._last_status and (force or now - self._status_at >= 1.0):
            self._last_status = status
            self._status_at = now
            self._send(f"STATUS={status}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def stopping(self, status: str) -> None:
        self._send(f"STOPPING=1\nSTATUS={status}", wait=1.0)
