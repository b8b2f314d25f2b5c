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

from daytime_sd import clock, leapseconds, log, nist
from daytime_sd.protocol import NIST_FORMAT, render

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing is slow to import, mypy honours both
if TYPE_CHECKING:
    from daytime_sd.config import Config

WITHHELD = b""  # the answer while --require-sync holds it back


class ClockSync:
    def __init__(self, config: Config) -> None:
        self.nist = config.format == NIST_FORMAT
        self.require = config.require_sync
        self.label = config.nist_label
        self.watch = clock.Watch(clock.read)  # clock.read looked up now: tests replace it
        self._table: leapseconds.LeapTable | None = None
        self._table_read = False
        self._fmt = config.format
        self._utc = config.utc

    @property
    def needed_per_connection(self) -> bool:
        return self.nist or self.require

    def poll(self, now: float, quiet: bool = False) -> bool:
        """Read the state if a second has passed; log a change.  True if it changed."""
        changed = self.watch.poll(now)
        if changed and not quiet:
            priority, text = self.watch.message()
            if self.require:
                text += (
                    "; answering again"
                    if self.watch.synchronized
                    else "; --require-sync: no answers until it is"
                )
            log.log(priority, text)
        return changed

    def status(self) -> str:
        if self.watch.clock is None and self.watch.error is None:
            return ""  # not read yet
        return clock.describe(self.watch.clock)

    def _leap_table(self, when: float) -> leapseconds.LeapTable | None:
        table = self._table
        if table is None or not table.valid_at(when):
            if self._table_read and table is None:
                return None  # unreadable: tried once, NIST's L is then the kernel's alone
            self._table_read = True
            try:
                self._table = table = leapseconds.read_leap_table()
            except (OSError, ValueError) as err:
                log.warning(
                    f"{leapseconds.LEAP_SECONDS_LIST}: {err}; leap seconds from the kernel only"
                )
                self._table = None
                return None
        return table

    def render(self, second: int) -> bytes:
        """The answer for ``second``, or WITHHELD."""
        if self.require and not self.watch.synchronized:
            return WITHHELD
        if self.nist:
            return nist.render(second, self.watch.clock, self._leap_table(second), self.label)
        return render(self._fmt, second, self._utc)
