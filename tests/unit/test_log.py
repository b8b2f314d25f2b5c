# SPDX-License-Identifier: MIT
"""Journal entries name the code that logged: CODE_FILE/CODE_LINE/CODE_FUNC of the caller.

No journald runs on the host, so these stop at our own boundary, ``log._send`` (what
``journal.send`` is bound to), or at python-systemd's ``sendv``, the call that would write
to journald's socket.  tests/e2e see the fields in a real journal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import pytest

from daytime_sd import log

HERE = __file__


@pytest.fixture
def journal_sink() -> Iterator[list[dict[str, object]]]:
    """Messages go to the journal; every ``_send`` call is recorded (message as MESSAGE)."""
    sent: list[dict[str, object]] = []

    def record(message: str, **fields: object) -> None:
        sent.append({"MESSAGE": message, **fields})

    saved = (log._threshold, log._sink, log._send)
    log.setup("debug", "journal")
    log._send = record
    try:
        yield sent
    finally:
        log._threshold, log._sink, log._send = saved


@pytest.mark.parametrize(
    "emit",
    [
        log.error,
        log.warning,
        log.info,
        log.debug,
        lambda message, **fields: log.log(6, message, **fields),
    ],
    ids=["error", "warning", "info", "debug", "log"],
)
def test_journal_fields_name_the_caller(
    journal_sink: list[dict[str, object]], emit: Callable[..., None]
) -> None:
    line = sys._getframe().f_lineno + 1
    emit("hello", remote_addr="127.0.0.1")
    (entry,) = journal_sink
    if emit.__name__ == "<lambda>":  # log.log called from the lambda two lines up there
        assert entry["CODE_FUNC"] == "<lambda>"
    else:
        assert entry["CODE_LINE"] == line
        assert entry["CODE_FUNC"] == "test_journal_fields_name_the_caller"
    assert entry["CODE_FILE"] == HERE
    assert type(entry["CODE_LINE"]) is int  # journal.send formats it with {:d}
    assert entry["MESSAGE"] == "hello"
    assert entry["REMOTE_ADDR"] == "127.0.0.1"


def test_journal_send_does_not_walk_the_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real journal.send, stopped at sendv: the fields it writes, and no extract_stack."""
    journal = pytest.importorskip("systemd.journal")
    written: list[tuple[str, ...]] = []
    walked: list[object] = []
    monkeypatch.setattr(journal, "sendv", lambda *args: written.append(args))
    real_extract = journal._traceback.extract_stack

    def extract_stack(*args: object, **kwargs: object) -> object:
        walked.append(args)
        return real_extract(*args, **kwargs)

    monkeypatch.setattr(journal._traceback, "extract_stack", extract_stack)
    saved = (log._threshold, log._sink, log._send)
    log.setup("info", "journal")
    log._send = None  # bind the real journal.send, as on the first message of a service
    try:
        line = sys._getframe().f_lineno + 1
        log.info("hello")
        sink = log._sink
    finally:
        log._threshold, log._sink, log._send = saved
    assert sink == "journal"  # journal.send did not raise (a str CODE_LINE would)
    assert walked == []
    (args,) = written
    assert "MESSAGE=hello" in args
    assert f"CODE_FILE={HERE}" in args
    assert f"CODE_LINE={line}" in args
    assert "CODE_FUNC=test_journal_send_does_not_walk_the_stack" in args
    assert "PRIORITY=6" in args and "SYSLOG_IDENTIFIER=daytime-sd" in args
