# SPDX-License-Identifier: MIT
"""Logging: structured journal entries under systemd, one concise line on stderr otherwise.

Not the stdlib ``logging`` module: importing it (and ``systemd.journal``, which pulls in
``logging``, ``uuid`` and more) costs more than a per-connection answer, so the journal
binding is loaded on the first message, and a quiet connection never pays for it.
"""

from __future__ import annotations

import os
import sys

# The per-connection path: typing.TYPE_CHECKING would import typing (bench/ "Import costs").
TYPE_CHECKING = False
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
    _log(priority, message, fields)


def _log(priority: int, message: str, fields: dict[str, object]) -> None:
    """The one implementation; every public function calls it directly, so the frame two
    levels up is always the one that logged."""
    global _send, _sink
    if priority > _threshold or _sink == "none":
        return
    if _sink == "journal":
        try:
            if _send is None:
                from systemd import journal

                _send = journal.send
            extra = {key.upper(): str(value) for key, value in fields.items()}
            # The caller's place, given: journal.send would otherwise walk the stack with
            # traceback on every message, and find this file, not the one that logged.
            caller = sys._getframe(2)
            code = caller.f_code
            _send(
                message,
                CODE_FILE=code.co_filename,
                CODE_LINE=caller.f_lineno,
                CODE_FUNC=code.co_name,
                PRIORITY=str(priority),
                SYSLOG_IDENTIFIER=IDENTIFIER,
                **extra,
            )
            return
        except Exception:  # no journal after all: fall back to stderr, never lose the line
            _sink = "stderr"
    try:
        sys.stderr.write(f"{IDENTIFIER}: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        _sink = "none"


def error(message: str, **fields: object) -> None:
    _log(3, message, fields)


def warning(message: str, **fields: object) -> None:
    _log(4, message, fields)


def notice(message: str, **fields: object) -> None:
    _log(5, message, fields)


def info(message: str, **fields: object) -> None:
    _log(6, message, fields)


def debug(message: str, **fields: object) -> None:
    _log(7, message, fields)
