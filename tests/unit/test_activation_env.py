"""activation.detect() on an environment mapping it is given (no sockets are opened)."""

from __future__ import annotations

import os
import stat

import pytest

from daytime_sd.activation import ActivationError, detect


def stdin_is_a_socket() -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(0).st_mode)
    except OSError:
        return False


def test_variables_for_another_process_are_removed_from_the_given_mapping() -> None:
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x", "OTHER": "kept"}
    found = detect(env)
    assert env == {"OTHER": "kept"}  # this mapping, not os.environ
    if not stdin_is_a_socket():
        assert found is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LISTEN_FDS": "1"}, "LISTEN_PID='' is not a process id"),
        ({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "x"}, "LISTEN_FDS='x' is not a number"),
        ({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "0"}, "LISTEN_FDS=0"),
    ],
)
def test_malformed_variables_in_the_given_mapping(env: dict[str, str], message: str) -> None:
    with pytest.raises(ActivationError, match=message):
        detect(env)


def test_no_variables_at_all() -> None:
    env = {"OTHER": "x"}
    found = detect(env)
    assert env == {"OTHER": "x"}
    if not stdin_is_a_socket():
        assert found is None
