# SPDX-License-Identifier: MIT
"""Dropping root after binding (standalone ``--user``), all or nothing."""

from __future__ import annotations

import os
import pwd


class PrivilegeError(Exception):
    """The drop was asked for and did not happen completely: refuse to serve."""


def drop_to(user: str) -> None:
    """Become ``user`` with exactly its groups; verify that root cannot be regained."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise PrivilegeError(f"--user {user}: no such user") from None
    if os.geteuid() != 0:
        if os.geteuid() == entry.pw_uid:
            return
        raise PrivilegeError(
            f"--user {user}: only root can change user; start as root or drop --user"
        )
    try:
        os.initgroups(entry.pw_name, entry.pw_gid)  # supplementary groups: the user's, not root's
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)  # sets real, effective and saved uid: no way back
    except OSError as err:
        raise PrivilegeError(f"--user {user}: cannot drop privileges: {err.strerror}") from None
    if entry.pw_uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            raise PrivilegeError(f"--user {user}: root could be regained after the drop")
    if os.getuid() != entry.pw_uid or os.geteuid() != entry.pw_uid or os.getegid() != entry.pw_gid:
        raise PrivilegeError(f"--user {user}: the drop did not take effect")
