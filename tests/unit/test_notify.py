# SPDX-License-Identifier: MIT
"""STATUS= text that sdnotify can encode and the service manager accepts, whatever it holds."""

from __future__ import annotations

import codecs

from hypothesis import given
from hypothesis import strategies as st

from daytime_sd.notify import STATUS_MAX, safe_status


def test_printable_ascii_is_sent_as_it_is() -> None:
    text = "Serving tcp 127.0.0.1:13, tcp [::1]:13 (in-process); 3 TCP connections"
    assert safe_status(text) is text


def test_the_rest_is_escaped_python_style() -> None:
    assert safe_status("/run/время.sock") == "/run/\\u0432\\u0440\\u0435\\u043c\\u044f.sock"
    assert safe_status("a\nREADY=1\rb\tc\x7f") == "a\\nREADY=1\\rb\\tc\\x7f"
    assert safe_status("\udcff") == "\\udcff"  # a path that is not UTF-8 (surrogateescape)
    assert safe_status("caf\xe9 \U0001f600") == "caf\\xe9 \\U0001f600"


def test_a_long_text_is_cut_with_a_mark() -> None:
    assert safe_status("x" * STATUS_MAX) == "x" * STATUS_MAX
    cut = safe_status("x" * (STATUS_MAX + 1))
    assert len(cut) == STATUS_MAX and cut.endswith("...")
    assert len(safe_status("é" * STATUS_MAX)) == STATUS_MAX  # cut after escaping


@given(st.text().filter(lambda t: "\\" not in t))
def test_any_text_becomes_printable_ascii_that_decodes_back(text: str) -> None:
    safe = safe_status(text)
    assert safe.isascii() and safe.isprintable()
    assert len(safe) <= STATUS_MAX
    safe.encode("latin-1")  # what sdnotify does with it
    if len(safe) < STATUS_MAX:  # not cut
        assert codecs.decode(safe, "unicode_escape") == text
