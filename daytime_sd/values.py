# SPDX-License-Identifier: MIT
"""Option values: parse and check one argument.

Each check turns the text given on the command line into the value a setting holds, or
raises ValueError with the reason, which config.parse turns into a usage error.  The table
in options.py names which check each option's value gets.
"""

from __future__ import annotations

import math

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing is slow to import, mypy honours both
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


def _ascii_digits(text: str) -> bool:
    """str.isdigit() alone is true for "²" and "١٣", and int() takes " 13", "1_3" and "١٣":
    an option value is plain ASCII digits or nothing."""
    return text.isascii() and text.isdigit()


def integer(low: int, high: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        if not _ascii_digits(text.removeprefix("-")):
            raise ValueError("not a whole number")
        value = int(text, 10)
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")
        return value

    return convert


def seconds(high: int) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("not a number of seconds") from None
        if not math.isfinite(value) or value < 0 or value > high:
            raise ValueError(f"must be from 0 to {high} seconds")
        return value

    return convert


def port(text: str) -> str:
    if not text or (_ascii_digits(text) and not 1 <= int(text) <= 65535):
        raise ValueError("must be a port number from 1 to 65535 or a service name")
    # Service names as /etc/services has them: ASCII letters, digits, '-' and '_'.
    if not _ascii_digits(text) and not (
        text.isascii() and all(c.isalnum() or c in "-_" for c in text)
    ):
        raise ValueError("must be a port number or a service name such as 'daytime'")
    return text


def host(text: str) -> str:
    if not text or "\0" in text or len(text) > 255:
        raise ValueError("must be a host name or an IPv4/IPv6 address")
    name = text.strip("[]") if text.startswith("[") and text.endswith("]") else text
    try:
        # What listeners.resolve() will do with a non-ASCII name (ASCII is passed as is):
        # an empty or over-long label, or an argv byte that is not UTF-8, raises
        # UnicodeError there (a traceback), not gaierror.
        if not name.isascii():
            name.encode("idna")
    except UnicodeError:
        raise ValueError("must be a host name or an IPv4/IPv6 address") from None
    return name


def choice(options: Sequence[str]) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text.lower() not in options:
            raise ValueError("must be one of " + ", ".join(options))
        return text.lower()

    return convert


def text(text: str) -> str:
    if "\0" in text:
        raise ValueError("must not contain NUL")
    return text


def label(text: str) -> str:
    from daytime_sd.nist import check_label  # only when the option is given

    return check_label(text)
