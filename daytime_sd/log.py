"""Logging: structured journal entries under systemd, one concise line on stderr otherwise.

Not the stdlib ``logging`` module: importing it (and ``systemd.journal``, which pulls in
``logging``, ``uuid`` and more) costs more than a per-connection answer, so the journal
binding is loaded on the first message, and a quiet connection never pays for it.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing is slow to import, mypy honours both
if TYPE_CHECKING:
    from collections.abc import Callable

PRIORITIES = {"error": 3, "warning": 4, "info": 6, "debug": 7}
IDENTIFIER = "daytime-sd"

_threshold = PRIORITIES["info"]
_sink = "stderr"  # "journal", "stderr" or "none"
_send: Callable[..., object] | None = None


def stderr_is_journal() -> bool:
    """True when systemd connected stderr to the journal (sd_journal_stream_fd(3) protocol)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = stream.partition(":")
    try:
        st = os.fstat(2)
        return dev.isdigit() and ino.isdigit() and (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except OSError:
        return False


def setup(level: str = "info", sink: str | None = None) -> None:
    """Choose where messages go; ``sink=None`` picks the journal when stderr is the journal."""
    global _threshold, _sink
    _threshold = PRIORITIES[level]
    _sink = sink or ("journal" if stderr_is_journal() else "stderr")


def enabled(priority: int) -> bool:
    return priority <= _threshold


def log(priority: int, message: str, **fields: object) -> None:
    """Emit ``message``; ``fields`` become journal fields (upper-cased), ignored on stderr."""
    global _send, _sink
    if priority > _threshold or _sink == "none":
        return
    if _sink == "journal":
        try:
            if _send is None:
                from systemd import journal

                _send = journal.send
            extra = {key.upper(): str(value) for key, value in fields.items()}
            _send(message, PRIORITY=str(priority), SYSLOG_IDENTIFIER=IDENTIFIER, **extra)
            return
        except Exception:  # no journal after all: fall back to stderr, never lose the line
            _sink = "stderr"
    try:
        sys.stderr.write(f"{IDENTIFIER}: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        _sink = "none"


def error(message: str, **fields: object) -> None:
    log(3, message, **fields)


def warning(message: str, **fields: object) -> None:
    log(4, message, **fields)


def info(message: str, **fields: object) -> None:
    log(6, message, **fields)


def debug(message: str, **fields: object) -> None:
    log(7, message, **fields)
