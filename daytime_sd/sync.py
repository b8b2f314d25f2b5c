# SPDX-License-Identifier: MIT
"""The kernel clock's state in the service: logged, in STATUS=, in NIST's H, and --require-sync.

clock.py reads the state and nist.py lays out NIST's line; this module decides what the
service does with them.  The loop modes (Accept=no, standalone) read the state at most
once a second from a timer, never on the answering path, and log one line whenever it
changes (warning priority while not synchronized).  A per-connection process (Accept=yes,
inetd) reads it only when ``--format nist`` or ``--require-sync`` needs it: everything
else would be a cost on every connection for a line nobody reads.

``--require-sync``: while the clock is not synchronized (or its state cannot be read) the
answer is empty: a TCP client gets a normal close (FIN) with no line and a datagram gets
no reply.  RFC 867 has no way to say "I do not know the time"; silence is the one answer
no client can take for a time.
"""

from __future__ import annotations

import os
import time

from daytime_sd import clock, leapseconds, log, nist
from daytime_sd.protocol import NIST_FORMAT, render

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing is slow to import, mypy honours both
if TYPE_CHECKING:
    from daytime_sd.config import Config

WITHHELD = b""  # the answer while --require-sync holds it back


class LeapList:
    """tzdata's leap-seconds.list, read once and again only when the file changes.

    The file changes when tzdata is upgraded, so the list is read at the first need, then
    again only when :meth:`refresh` sees another file (inode, size or mtime), or after
    :meth:`reload` (SIGHUP).  An expired list is kept and said once: nist.py ignores it as
    a whole past its expiry, and NIST's L then comes from the kernel alone.
    """

    __slots__ = ("_expiry_said", "_stamp", "path", "table")

    def __init__(self, path: str | None = None) -> None:
        self.path = path or leapseconds.LEAP_SECONDS_LIST
        self.table: leapseconds.LeapTable | None = None
        self._stamp: tuple[int, ...] | None = None  # what was read; None: nothing yet
        self._expiry_said = False

    def _identity(self) -> tuple[int, ...]:
        try:
            st = os.stat(self.path)
        except OSError:
            return ()  # missing: read (and fail) again only once it appears
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def refresh(self) -> None:
        """Read the list if it was never read or the file is another one now."""
        stamp = self._identity()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        self._expiry_said = False
        try:
            self.table = leapseconds.read_leap_table(self.path)
        except (OSError, ValueError) as err:
            self.table = None
            log.warning(f"{self.path}: {err}; leap seconds from the kernel only")

    def reload(self) -> None:
        """Read the file again at the next need (SIGHUP)."""
        self._stamp = None

    def at(self, when: float) -> leapseconds.LeapTable | None:
        """The table for an answer at ``when``; says once when it has expired."""
        if self._stamp is None:
            self.refresh()
        table = self.table
        if table is not None and not table.valid_at(when) and not self._expiry_said:
            self._expiry_said = True
            expired = (
                "states no expiry"
                if table.expires is None
                else ("expired on " + time.strftime("%Y-%m-%d", time.gmtime(table.expires)))
            )
            log.notice(
                f"{self.path} {expired}: NIST's leap indicator now comes from the kernel "
                "alone; upgrade tzdata for a current list"
            )
        return table


class ClockSync:
    def __init__(self, config: Config) -> None:
        self.nist = config.format == NIST_FORMAT
        self.require = config.require_sync
        self.label = config.nist_label
        self.watch = clock.Watch(clock.read)  # clock.read looked up now: tests replace it
        self.leaps = LeapList()
        self._fmt = config.format
        self._utc = config.utc
        self._reported = False  # the first report is the state at start, not a change

    @property
    def needed_per_connection(self) -> bool:
        return self.nist or self.require

    def poll(self, now: float, quiet: bool = False) -> bool:
        """Read the state if a second has passed; log a change.  True if it changed.

        The loop modes call it before READY=1, so the first client is answered from a
        state that was read, and then once a second.
        """
        changed = self.watch.poll(now)
        if self.nist:
            self.leaps.refresh()  # a stat a second: a tzdata upgrade is seen without a reload
        if changed and not quiet:
            priority, text = self.watch.message()
            if self.require and not self.watch.synchronized:
                text += "; --require-sync: no answers until it is"
            elif self.require and self._reported:
                text += "; answering again"
            self._reported = True
            log.log(priority, text)
        return changed

    def reload(self) -> None:
        """SIGHUP: the leap-second list is read again at the next need."""
        self.leaps.reload()

    def status(self) -> str:
        if self.watch.clock is None and self.watch.error is None:
            return ""  # not read yet
        return clock.describe(self.watch.clock, self.watch.error)

    def render(self, second: int) -> bytes:
        """The answer for ``second``, or WITHHELD."""
        if self.require and not self.watch.synchronized:
            return WITHHELD
        if self.nist:
            return nist.render(second, self.watch.clock, self.leaps.at(second), self.label)
        return render(self._fmt, second, self._utc)
